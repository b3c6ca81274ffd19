"""Exported bundles: a registered version as a directory a server can verify and load without the store.

    bundle/
      bundle.json          the signed manifest exactly as registered ({"manifest", "signature"})
      public_key.pem       the project's Ed25519 public key (its fingerprint must be the manifest's signer)
      components/<sha256>  the plaintext of each component serving needs, named by its SHA-256

Loading checks the signature, that the signer is the key given (and, when pinned, the expected
key id), and each component file's SHA-256, before anything is parsed. Only the components the
chosen engine needs are exported (no held-out data, no metrics), so an image never carries data.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

from keelml.errors import IntegrityError, NotFoundError
from keelml.model.trust import TrustPolicy
from keelml.store.atomic import atomic_write_bytes, private_dirs
from keelml.store.envelope import canonical_json
from keelml.store.keys import public_key_id

BUNDLE_FILE = "bundle.json"
KEY_FILE = "public_key.pem"


def export_bundle(project: Any, name: str, version: int, directory: Path) -> dict[str, Any]:
    """Write the verified version's serving components to `directory`; returns the engine description."""
    row, bundle = project.registry.bundle(name, version)
    components = {k: str(v["sha256"]) for k, v in bundle["manifest"]["components"].items()}
    engine = json.loads(project.artifacts.get(components["engine"])) if "engine" in components else {
        "engine": "sklearn"}
    wanted = ["contract", "engine"] + (["onnx"] if engine.get("engine") == "onnx" else ["model"])
    target = directory / "components"
    private_dirs(target)  # files 0600, directories 0700, like everything keelml writes
    for part in wanted:
        if part in components:
            atomic_write_bytes(target / components[part], project.artifacts.get(components[part]))
    atomic_write_bytes(directory / BUNDLE_FILE, json.dumps({**bundle, "version": int(row["version"])},
                                                           indent=1).encode())
    atomic_write_bytes(directory / KEY_FILE, project.keys.public_key.public_bytes(Encoding.PEM,
                                                                                 PublicFormat.SubjectPublicKeyInfo))
    return engine


def load_exported(directory: Path, *, trusted_key_id: str | None = None
                  ) -> tuple[str, int, str, dict[str, str], Any, TrustPolicy]:
    """(name, version, bundle digest, components present, verified getter) of an exported bundle."""
    path = directory / BUNDLE_FILE
    if not path.is_file():
        raise NotFoundError(f"no exported bundle at {directory}", expected=f"{BUNDLE_FILE} there",
                            fix="export one with `keel containerize NAME/VERSION -o DIR`")
    raw = path.read_bytes()
    bundle = json.loads(raw)
    key = load_pem_public_key((directory / KEY_FILE).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise IntegrityError("the exported public key is not an Ed25519 key", fix="re-export the bundle")
    manifest = bundle.get("manifest", {})
    signer = public_key_id(key)
    if manifest.get("signed_by") != signer or (trusted_key_id and trusted_key_id != signer):
        raise IntegrityError(f"the bundle is signed by {manifest.get('signed_by')!r}, not the trusted key",
                             expected=trusted_key_id or signer, fix="re-export the bundle from its project")
    try:
        key.verify(base64.b64decode(str(bundle.get("signature", ""))), canonical_json(manifest))
    except (InvalidSignature, ValueError):
        raise IntegrityError("the exported bundle's signature is invalid (the manifest was altered)",
                             fix="re-export the bundle from its project") from None
    present = {part: str(entry["sha256"]) for part, entry in manifest["components"].items()
               if (directory / "components" / str(entry["sha256"])).is_file()}

    def get(digest: str) -> bytes:
        data = (directory / "components" / digest).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise IntegrityError(f"component {digest[:12]} of the exported bundle was altered",
                                 fix="re-export the bundle from its project")
        return data

    bundle_id = hashlib.sha256(raw).hexdigest()
    # the image serves its own project's bundle, pinned to that project's key: its recorded policy is that project's
    policy = TrustPolicy.from_dict((manifest.get("info") or {}).get("trust"))
    return str(manifest["name"]), int(bundle.get("version", 0)), bundle_id, present, get, policy
