"""Moving a model version between projects: `keel models export` and `keel models import`.

The archive is an uncompressed POSIX tar with exactly these regular files:

    keel-export.json     name, version, signer key id, component sizes, lineage facts (canonical JSON)
    keel-export.sig      base64 Ed25519 signature of keel-export.json by the exporting project
    manifest.json        the bundle manifest (canonical JSON)
    manifest.sig         base64 Ed25519 signature of the manifest (the bundle's own signature)
    components/<part>    each component's plaintext (model, contract, metrics, cv, verdict)

Import refuses, naming the entry: anything but regular files (links, directories, devices),
absolute or `..` paths and other unsafe names, duplicates, more than MAX_MEMBERS entries or an
entry over MAX_MEMBER_BYTES, unknown or missing files, a signer that is not trusted, a bad
signature, a digest mismatch, a refused gate verdict, a model stored under another codec, and a
model file that is not a sound, bounded skops file or that names types beyond the importing
project's trust policy. Such types are listed with the fix; the import then succeeds only when the
operator names each one (`allow_types`, `keel models import --allow-type`): they are recorded in the
re-signed bundle's `info.trust` (so that version, and no other, loads with exactly them) and in the
audit log's `import` record. Nothing is extracted to disk: entries are read into memory, checked,
then re-encrypted into the store under this project's keys and registered with the origin in
lineage and the audit log.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import stat
import tarfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keelml.errors import InputError, IntegrityError, KeelError
from keelml.model.persist import extra_types
from keelml.model.trust import TrustPolicy, extra_type, never_trusted
from keelml.names import check_member_path, check_name
from keelml.registry.bundles import build_bundle, component_entries, signature_valid
from keelml.store.atomic import atomic_write_bytes
from keelml.store.envelope import canonical_json
from keelml.store.trust import TrustStore

if TYPE_CHECKING:
    from keelml.registry.core import Registry
    from keelml.registry.status import Registration

EXPORT_FORMAT = "keelml.export/1"
EXPORT_JSON, EXPORT_SIG = "keel-export.json", "keel-export.sig"
MANIFEST_JSON, MANIFEST_SIG = "manifest.json", "manifest.sig"
MAX_MEMBERS = 64
MAX_MEMBER_BYTES = 1 << 30
MAX_TOTAL_BYTES = 2 << 30


def _sign(registry: Registry, data: bytes) -> bytes:
    return base64.b64encode(registry.keys.sign(data)) + b"\n"


def export_bundle(registry: Registry, name: str, ref: str | int | None, path: Path, *, actor: str | None = None,
                  overwrite: bool = False) -> dict[str, Any]:
    """Write one verified version as a single archive file at `path` (atomically)."""
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists", expected="a new file name", fix="choose another -o, or pass --force")
    report = registry.verify(name, ref)  # signature, digests, gate verdict and the model's type audit
    version = report["version"]
    row, bundle = registry.bundle(name, version)
    manifest = bundle["manifest"]
    facts = registry.lineage(name, version)
    header = {"format": EXPORT_FORMAT, "name": name, "version": version, "bundle": row["bundle_id"],
              "signed_by": registry.keys.key_id, "exported_at": time.time(),
              "components": {p: {"sha256": e["sha256"], "size": e["size"]} for p, e in report["components"].items()},
              "lineage": {k: facts[k] for k in ("run_id", "spec", "code", "origin") if facts.get(k) is not None}}
    header_bytes = canonical_json(header)
    manifest_bytes = canonical_json(manifest)
    members = [(EXPORT_JSON, header_bytes), (EXPORT_SIG, _sign(registry, header_bytes)),
               (MANIFEST_JSON, manifest_bytes), (MANIFEST_SIG, str(bundle["signature"]).encode() + b"\n")]
    for part, entry in sorted(component_entries(manifest, where=f"{name} version {version}").items()):
        members.append((f"components/{part}", registry.artifacts.get(entry["sha256"])))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member_name, data in members:
            info = tarfile.TarInfo(member_name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    archive = buffer.getvalue()
    atomic_write_bytes(path, archive, mode=0o600)
    digest = hashlib.sha256(archive).hexdigest()
    registry.audit.append("export", actor=actor, name=name, version=version, bundle=row["bundle_id"],
                          archive_sha256=digest, path=str(path.resolve()))
    return {"name": name, "version": version, "path": str(path), "sha256": digest, "bytes": len(archive)}


def _refused(archive: str, what: str,
             fix: str = "do not import this archive; ask its sender for a fresh export") -> IntegrityError:
    return IntegrityError(f"{archive}: {what}", expected="an unaltered archive written by `keel models export`",
                          fix=fix)


def read_archive(path: Path, *, max_members: int = MAX_MEMBERS, max_member_bytes: int = MAX_MEMBER_BYTES,
                 max_total_bytes: int = MAX_TOTAL_BYTES) -> dict[str, bytes]:
    """The archive's entries by name, in memory, after the structural checks (no disk writes)."""
    label = path.name
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", str(path)):  # file://, https://, s3:// (Path folds // to /)
        raise InputError(f"{str(path)[:80]!r} is a URL", expected="a local archive file", fix="download it first")
    try:
        mode = os.stat(path).st_mode  # never opens a FIFO or device: it is refused before any read
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", expected="an archive file",
                         fix="check the path") from None
    if not stat.S_ISREG(mode):
        raise InputError(f"{path} is not a regular file", expected="an archive file written by `keel models export`",
                         fix="give the path of the .keel file")
    entries: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(path, mode="r:") as tar:
            count = 0
            while (member := tar.next()) is not None:
                count += 1
                if count > max_members:
                    raise _refused(label, f"has more than {max_members} entries")
                try:
                    check_member_path(member.name)
                except InputError as exc:
                    raise _refused(label, exc.what) from None
                kind = ("a symbolic link" if member.issym() else "a hard link" if member.islnk()
                        else "a directory" if member.isdir() else "a sparse file" if member.issparse()
                        else None if member.isreg() else "a device or special file")
                if kind:
                    raise _refused(label, f"entry {member.name!r} is {kind}; only regular files are accepted")
                if member.name in entries:
                    raise _refused(label, f"entry {member.name!r} appears twice")
                if member.size > max_member_bytes or total + member.size > max_total_bytes:
                    raise _refused(label, f"entry {member.name!r} is too large ({member.size} bytes)")
                handle = tar.extractfile(member)
                data = handle.read(member.size + 1) if handle is not None else b""
                if len(data) != member.size:
                    raise _refused(label, f"entry {member.name!r} is truncated")
                total += member.size
                entries[member.name] = data
    except tarfile.TarError as exc:
        raise _refused(label, f"is not a readable keelml export archive ({exc})") from None
    return entries


def _json(entries: dict[str, bytes], member: str, label: str) -> dict[str, Any]:
    if member not in entries:
        raise _refused(label, f"file {member!r} is missing from the archive")
    try:
        value = json.loads(entries[member])
    except ValueError:
        raise _refused(label, f"file {member!r} is not valid JSON (it was altered)") from None
    if not isinstance(value, dict) or canonical_json(value) != entries[member]:
        raise _refused(label, f"file {member!r} is not in the canonical form keelml writes (it was altered)")
    return value


def _check_signature(entries: dict[str, bytes], document: dict[str, Any], sig_member: str, doc_member: str,
                     key: Any, label: str) -> str:
    if sig_member not in entries:
        raise _refused(label, f"file {sig_member!r} is missing from the archive")
    signature = entries[sig_member].decode("ascii", errors="replace").strip()
    if not signature_valid(document, signature, key):
        raise _refused(label, f"the signature in {sig_member!r} does not match {doc_member!r} "
                              f"(one of them was altered, or another key signed it)")
    return signature


def _allowed_extras(label: str, needed: Mapping[str, list[str]], allowed: tuple[str, ...]) -> tuple[str, ...]:
    """The extra types the archive's model files need, when the operator named each of them (and no other)."""
    for member, types in needed.items():
        never = [t for t in types if never_trusted(t)]
        if never:
            raise _refused(label, f"file {member!r} names {', '.join(never)}, which keelml never allows "
                                  "(it can run code or reach the system)")
        missing = [t for t in types if t not in allowed]
        if missing:
            flags = " ".join(f"--allow-type {t}" for t in missing)
            raise IntegrityError(
                f"{label}: file {member!r} needs type(s) beyond this project's trust policy: {', '.join(missing)}",
                expected="only the types keelml allows and this project's spec declares (trusting the sender's key "
                         "accepts its signatures, never its type list)",
                fix=f"if you have read that code and trust it, import again with {flags} (recorded in the audit "
                    "log; this version alone then loads with exactly those types), or declare it in this "
                    "project's spec (preprocess.functions, model.family); otherwise do not import this archive")
    unused = sorted(set(allowed) - {t for types in needed.values() for t in types})
    if unused:
        raise InputError(f"--allow-type {', '.join(unused)}: the archive's model does not need it",
                         expected="exactly the types a refused import listed",
                         fix="remove " + " ".join(f"--allow-type {t}" for t in unused))
    return allowed


def import_bundle(registry: Registry, path: Path, trust: TrustStore, *, actor: str | None = None,
                  allow_types: Iterable[str] = (), **limits: int) -> Registration:
    """Verify an export archive, re-encrypt its components under this project's keys and register it;
    `allow_types` names each type beyond this project's trust policy that its model may hold."""
    label = path.name
    allowing = tuple(sorted({extra_type(t) for t in allow_types}))  # a malformed or never-trusted name: exit 2
    entries = read_archive(path, **limits)
    archive_sha = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest = _json(entries, MANIFEST_JSON, label)
    header = _json(entries, EXPORT_JSON, label)
    signer = str(manifest.get("signed_by"))
    if signer == registry.keys.key_id:
        trusted_as, key = "this project", registry.keys.public_key
    else:
        found = trust.find(signer)
        if found is None:
            raise _refused(label, f"{MANIFEST_JSON!r} is signed by {signer!r}, which this project does not trust",
                           fix="get the exporter's public key (`keel keys show-public` there) and run "
                               "`keel keys trust THEIR.pem --name THEM` here, if you trust them")
        trusted_as, key = found
    signature = _check_signature(entries, manifest, MANIFEST_SIG, MANIFEST_JSON, key, label)
    if header.get("signed_by") != signer or header.get("format") != EXPORT_FORMAT:
        raise _refused(label, f"{EXPORT_JSON!r} does not match {MANIFEST_JSON!r} (signer or format differ)")
    _check_signature(entries, header, EXPORT_SIG, EXPORT_JSON, key, label)
    try:
        name = check_name(manifest.get("name"))
    except KeelError as exc:
        raise _refused(label, f"{MANIFEST_JSON!r}: {exc.what}") from None
    try:  # names, digests, and the model under the model codec (so it is always type-audited)
        parts = component_entries(manifest, where=repr(MANIFEST_JSON))
    except KeelError as exc:
        raise _refused(label, exc.what) from None
    expected = {EXPORT_JSON, EXPORT_SIG, MANIFEST_JSON, MANIFEST_SIG, *(f"components/{p}" for p in parts)}
    for extra in sorted(set(entries) - expected):
        raise _refused(label, f"unexpected file {extra!r} in the archive (it was added)")
    for missing in sorted(expected - set(entries)):
        raise _refused(label, f"file {missing!r} is missing from the archive (it was removed)")
    needed: dict[str, list[str]] = {}
    for part, entry in parts.items():
        member = f"components/{part}"
        if hashlib.sha256(entries[member]).hexdigest() != entry["sha256"]:
            raise _refused(label, f"file {member!r} does not match the SHA-256 in the signed manifest (it was altered)")
        if entry["codec"] == "model":
            try:  # the importing project's policy: trusting a key never widens what may be loaded
                needed[member] = extra_types(entries[member], registry.policy)
            except IntegrityError as exc:
                raise _refused(label, f"file {member!r}: {exc.what}") from None
    allowed = _allowed_extras(label, needed, allowing)
    policy = registry.policy.union(TrustPolicy(types=allowed))
    verdict = json.loads(entries["components/verdict"]) if "verdict" in parts else {}
    if not isinstance(verdict, dict) or not verdict.get("passed"):
        raise _refused(label, "the gate refused this model at its origin; refused models are never registered")
    origin = {"signed_by": signer, "trusted_as": trusted_as, "name": name, "version": header.get("version"),
              "bundle": header.get("bundle"), "archive_sha256": archive_sha}
    for part, entry in parts.items():
        registry.artifacts.put(entries[f"components/{part}"], codec=entry["codec"])
    local = build_bundle(name=name, components={p: e["sha256"] for p, e in parts.items()},
                         codecs={p: e["codec"] for p, e in parts.items()},
                         # the policy it was checked under: the importer's own plus what the operator allowed,
                         # never the origin's list
                         info={**manifest.get("info", {}), "trust": policy.as_dict()}, keys=registry.keys)
    local["manifest"]["imported_from"] = {**origin, "manifest": manifest, "signature": signature}
    local["signature"] = base64.b64encode(registry.keys.sign(canonical_json(local["manifest"]))).decode()
    bundle_id = registry.artifacts.put(canonical_json(local), codec="json")
    metrics = json.loads(entries["components/metrics"]) if "metrics" in parts else {}
    primary = metrics.get("primary", {}) if isinstance(metrics, dict) else {}
    lineage = {**{k: v for k, v in dict(header.get("lineage") or {}).items() if k in ("spec", "code")},
               "origin": {**origin, "run_id": (header.get("lineage") or {}).get("run_id")}}
    registration = registry.register(name, bundle_id, run_id=f"import-{archive_sha[:16]}",
                                     summary={"primary": primary},
                                     lineage=lineage, actor=actor)
    registry.audit.append("import", actor=actor, name=name, version=registration.version, bundle=bundle_id,
                          created=registration.created, origin=origin, allowed_types=list(allowed))
    return registration
