"""Model bundles: a signed manifest of component artifact digests, and the checks run before use."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from keelml.errors import IntegrityError, KeelError, NotFoundError
from keelml.names import check_artifact_id, check_name
from keelml.store.artifacts import ArtifactStore
from keelml.store.envelope import canonical_json
from keelml.store.keys import KeyRing

BUNDLE_FORMAT = "keelml.bundle/1"
COMPONENTS = ("model", "contract", "metrics", "cv", "verdict", "profile")
MODEL_CODEC = "model"  # skops bytes, audited against the trust policy wherever they are read
JUDGED = ("model", "metrics")  # components every gate verdict names by digest (see check_verdict_binding)


def build_bundle(*, name: str, components: Mapping[str, str], codecs: Mapping[str, str],
                 info: Mapping[str, Any], keys: KeyRing) -> dict[str, Any]:
    """A bundle manifest: component artifact ids (SHA-256 digests), facts, and an Ed25519 signature."""
    manifest = {
        "format": BUNDLE_FORMAT,
        "name": name,
        "components": {k: {"sha256": v, "codec": codecs[k]} for k, v in sorted(components.items())},
        "info": dict(info),
        "signed_by": keys.key_id,
    }
    signature = base64.b64encode(keys.sign(canonical_json(manifest))).decode()
    return {"manifest": manifest, "signature": signature}


def check_bundle(bundle: Mapping[str, Any], keys: KeyRing, artifacts: ArtifactStore, *, where: str,
                 name: str | None = None) -> None:
    """Verify the bundle's signature, its model name, and that every component is present and intact."""
    manifest = bundle.get("manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise IntegrityError(f"{where}: not a keelml bundle", expected=BUNDLE_FORMAT,
                             fix="register models only through `keel run`")
    if manifest.get("signed_by") != keys.key_id:
        raise IntegrityError(f"{where}: signed by an untrusted key {manifest.get('signed_by')!r}",
                             expected=f"this project's key {keys.key_id}",
                             fix="only bundles signed by this project's key are loaded")
    if not signature_valid(manifest, bundle.get("signature"), keys.public_key):
        raise IntegrityError(f"{where}: bundle signature is invalid (the manifest was altered)",
                             fix="treat this model version as tampered with; re-run the pipeline")
    if name is not None and manifest.get("name") != name:
        raise IntegrityError(f"{where}: the bundle is for model {manifest.get('name')!r}, not {name!r}",
                             expected="a registry entry pointing at a bundle of the same model",
                             fix="treat the registry as tampered with; re-register with `keel run`")
    problems: list[IntegrityError] = []
    for part, entry in component_entries(manifest, where=where).items():
        try:
            artifacts.header(entry["sha256"])  # raises if missing, altered or foreign
        except (IntegrityError, NotFoundError) as exc:
            problems.append(component_problem(f"component {part!r}", exc))
    if problems:  # every damaged component is named, not only the first
        raise IntegrityError(f"{where}: " + "; ".join(p.what for p in problems), expected=problems[0].expected,
                             fix=problems[0].fix)


def component_problem(where: str, exc: IntegrityError | NotFoundError) -> IntegrityError:
    """A component (or bundle) that signed data names but the store lacks or holds altered: an integrity
    failure (exit 3), never "not found" (exit 2)."""
    if isinstance(exc, IntegrityError):
        return IntegrityError(f"{where}: {exc.what}", expected=exc.expected, fix=exc.fix)
    return IntegrityError(f"{where}: {exc.what}",
                          expected="every component the signed manifest names, present in the store",
                          fix="treat the store as tampered with or damaged: restore it from a backup, "
                              "or re-run the pipeline that made this version")


def signature_valid(manifest: Mapping[str, Any], signature: object, key: Ed25519PublicKey) -> bool:
    """True when `signature` (base64) is key's Ed25519 signature over the manifest's canonical JSON."""
    try:
        key.verify(base64.b64decode(str(signature or ""), validate=True), canonical_json(manifest))
    except (InvalidSignature, ValueError):
        return False
    return True


def component_entries(manifest: Mapping[str, Any], *, where: str) -> dict[str, dict[str, str]]:
    """The manifest's components, each {"sha256", "codec"}, with names and digests checked."""
    components = manifest.get("components")
    if not isinstance(components, dict):
        raise IntegrityError(f"{where}: the manifest has no components", expected="a component table",
                             fix="treat this bundle as tampered with")
    checked: dict[str, dict[str, str]] = {}
    for part, entry in components.items():
        try:
            check_name(part, what="component name")
            if not isinstance(entry, dict) or not isinstance(entry.get("codec"), str):
                raise IntegrityError(f"component {part!r} has no codec")
            if (part == "model") != (entry["codec"] == MODEL_CODEC):  # the model is always type-audited
                raise IntegrityError(f"component {part!r} has codec {entry['codec']!r}: only the component "
                                     f"'model' is stored with the {MODEL_CODEC!r} codec, and it always is")
            checked[part] = {"sha256": check_artifact_id(entry.get("sha256")), "codec": entry["codec"]}
        except KeelError as exc:
            raise IntegrityError(f"{where}: malformed manifest: {exc.what}", expected="a manifest written by keelml",
                                 fix="treat this bundle as tampered with") from None
    return checked


def require_gate_passed(bundle: Mapping[str, Any], artifacts: ArtifactStore, *, where: str) -> None:
    """Only a model its gate passed may be (or stay) registered, and only with the verdict that judged it."""
    entry = bundle["manifest"]["components"].get("verdict")
    verdict = json.loads(artifacts.get(str(entry["sha256"]))) if entry else {}
    if not verdict.get("passed"):
        raise IntegrityError(f"{where}: the gate refused this model ({verdict.get('reason', 'no verdict')})",
                             expected="only models that passed the gate in the registry",
                             fix="improve the model until the gate passes; refused models are never registered")
    check_verdict_binding(bundle["manifest"], verdict, where=where)


def check_verdict_binding(manifest: Mapping[str, Any], verdict: Mapping[str, Any], *, where: str) -> None:
    """The verdict judged this bundle: it names ("judged": {input: SHA-256}) the model and metrics it judged,
    and every gate input the bundle holds as a component is the one the verdict names.

    A verdict is signed like every artifact but says nothing by itself about which model it judged; this
    binding is what stops a passing verdict from being bundled with another model.
    """
    judged = verdict.get("judged")
    components = component_entries(manifest, where=where)
    named = judged if isinstance(judged, dict) else {}
    missing = [part for part in JUDGED if not isinstance(named.get(part), str) or part not in components]
    if missing:
        raise IntegrityError(
            f"{where}: the gate verdict does not name the {' and '.join(missing)} of this bundle",
            expected=f"a verdict naming the SHA-256 of the {' and '.join(JUDGED)} it judged (`judged`), "
                     "both components of the bundle",
            fix="re-run the pipeline (`keel run`): its gate records what it judged; if this bundle came from the "
                "pipeline, treat the store as tampered with")
    order = [*JUDGED, *sorted(set(named) - set(JUDGED))]
    other = {part: str(named[part]) for part in order if part in components
             and components[part]["sha256"] != named[part]}
    if other:
        shown = ", ".join(f"{part} {digest[:12]} (the bundle holds {components[part]['sha256'][:12]})"
                          for part, digest in other.items())
        raise IntegrityError(f"{where}: the gate verdict judged another {' and '.join(other)} than this bundle holds: "
                             f"{shown}", expected="the verdict of this bundle's own model and metrics",
                             fix="treat the store as tampered with (a verdict was reused for another model); "
                                 "re-run the pipeline to judge this model")
