"""Content-addressed artifact store over a local directory or any fsspec filesystem."""

from __future__ import annotations

import errno
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from keelml.errors import IntegrityError, NotFoundError, SpecError
from keelml.store import envelope
from keelml.store.atomic import atomic_write_bytes, is_temp
from keelml.store.keys import KeyRing

_ID = re.compile(r"^[0-9a-f]{64}$")
OWNER = "keel-store.json"  # at the root of a shared artifact location: which signing key owns it


@dataclass
class VerifyReport:
    """Outcome of re-hashing and re-checking every artifact in the store."""

    checked: int = 0
    problems: list[str] = field(default_factory=list)
    leftover_temp_files: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


class _Files:
    """Byte-level file access: pathlib for local roots, fsspec for URLs (s3://, gs://, memory://)."""

    def __init__(self, root: str, options: Mapping[str, Any] | None = None) -> None:
        self.remote = "://" in root and not root.startswith("file://")
        if self.remote:
            import fsspec  # fsspec and its drivers: only for a store.artifacts_url

            self.fs, self.root = fsspec.core.url_to_fs(root, **dict(options or {}))
        else:
            self.root = str(Path(root.removeprefix("file://")).resolve())

    def join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def write(self, path: str, data: bytes) -> None:
        if self.remote:
            self.fs.pipe_file(path, data)  # object stores: a put is atomic
        else:
            atomic_write_bytes(Path(path), data)

    def read(self, path: str) -> bytes:
        if self.remote:
            return bytes(self.fs.cat_file(path))
        return _read_inside(Path(self.root), Path(path))

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(path)) if self.remote else Path(path).is_file()

    def list(self, directory: str) -> Iterator[str]:
        if self.remote:
            if self.fs.exists(directory):
                yield from (str(p) for p in self.fs.find(directory))
            return
        base = Path(directory)
        if base.is_dir():
            yield from (str(p) for p in sorted(base.rglob("*")) if p.is_file())


def _read_inside(root: Path, path: Path) -> bytes:
    """Read a regular file under root without following a link out of it (IntegrityError otherwise)."""
    outside = IntegrityError(f"{path} is a link or leaves the store root {root}; refusing to read it",
                             expected="regular files inside the store", fix=envelope.REPAIR)
    if root.resolve() not in path.parent.resolve().parents and path.parent.resolve() != root.resolve():
        raise outside
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise outside from None
        raise
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


class ArtifactStore:
    """put() bytes, get() them back verified: signature, digest, then decryption."""

    def __init__(
        self,
        root: str,
        keys: KeyRing,
        *,
        encrypt: bool = True,
        trusted_keys: list[Ed25519PublicKey] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.location = root
        self.storage_options = dict(storage_options or {})
        self._files = _Files(root, self.storage_options)
        self._keys = keys
        self._encrypt = encrypt
        self._trusted = envelope.trusted_from(keys, trusted_keys)

    @property
    def root(self) -> str:
        return str(self._files.root)

    @property
    def remote(self) -> bool:
        """True for a URL (s3://, gs://, memory://...), False for a local or shared directory."""
        return self._files.remote

    def claim(self) -> None:
        """Mark a shared location as this project's (by signing key id), or refuse another project's.

        Two projects with different keys in one location would overwrite each other's artifacts
        (same content, same id, different signer), so the first one to use it writes `OWNER`
        and every later opening checks it.
        """
        path = self._files.join(OWNER)
        mine = {"format": 1, "signed_by": self._keys.key_id}
        try:
            found = json.loads(self._files.read(path))
        except FileNotFoundError:
            self._files.write(path, json.dumps(mine, sort_keys=True).encode())
            return
        except ValueError:
            found = {}
        owner = found.get("signed_by") if isinstance(found, dict) else None
        if owner != self._keys.key_id:
            raise SpecError(
                f"the artifact store {self.location} belongs to another project (signing key {owner}); "
                f"this project's signing key is {self._keys.key_id}",
                expected="one artifacts location per project key pair",
                fix="give this project its own store.artifacts_url (e.g. another prefix), or run it with the "
                    "owning project's keys (KEEL_MASTER_KEY and KEEL_SIGNING_KEY, or its keys/ directory)",
            )

    def _path(self, artifact_id: str) -> str:
        if not _ID.match(artifact_id):
            raise NotFoundError(
                f"{artifact_id!r} is not an artifact id",
                expected="64 lowercase hex characters (a SHA-256 digest)",
                fix="copy the id from `keel runs show RUN`",
            )
        return self._files.join("objects", artifact_id[:2], artifact_id)

    def put(self, data: bytes, *, codec: str) -> str:
        """Store bytes (deduplicated by content) and return their artifact id.

        An existing copy is kept only if it is intact and sealed as this store seals (encrypted or
        not); a damaged or differently sealed copy is replaced.
        """
        artifact_id = envelope.sha256_hex(data)
        if self.problem(artifact_id, reseal=False) is not None:
            _, blob = envelope.seal(data, codec=codec, keys=self._keys, encrypt=self._encrypt)
            self._files.write(self._path(artifact_id), blob)
        return artifact_id

    def exists(self, artifact_id: str) -> bool:
        return self._files.exists(self._path(artifact_id))

    def problem(self, artifact_id: str, *, reseal: bool = True) -> str | None:
        """None if the artifact is present, intact and sealed as configured; else what is wrong.

        With `reseal`, an intact artifact stored unencrypted while encryption is on (or the other
        way round) is rewritten in place, so turning encryption on covers existing artifacts too.
        """
        path = self._path(artifact_id)
        try:
            blob = self._files.read(path)
        except FileNotFoundError:
            return "is missing from the store"
        where = f"artifact {artifact_id[:12]}"
        try:
            header = envelope.check(blob, expected_id=artifact_id, trusted=self._trusted, where=where)
            if (header.get("enc") is not None) == self._encrypt:
                return None
            if not reseal:
                return "is sealed differently from the store's encryption setting"
            plaintext = envelope.open_payload(blob, header, self._keys, where=where)
        except IntegrityError as exc:
            return f"failed its integrity check ({exc.what})"
        _, sealed = envelope.seal(plaintext, codec=str(header["codec"]), keys=self._keys, encrypt=self._encrypt)
        self._files.write(path, sealed)
        return None

    def _blob(self, artifact_id: str) -> bytes:
        path = self._path(artifact_id)
        try:
            return self._files.read(path)
        except FileNotFoundError:
            raise NotFoundError(
                f"artifact {artifact_id[:12]} is missing from the store {self.root}",
                expected="every artifact recorded in the metadata to be present",
                fix="re-run the pipeline to recreate it (`keel run SPEC`)",
            ) from None

    def header(self, artifact_id: str) -> dict[str, Any]:
        """The verified header (codec, size, encryption info) of an artifact."""
        where = f"artifact {artifact_id[:12]}"
        return envelope.check(self._blob(artifact_id), expected_id=artifact_id, trusted=self._trusted, where=where)

    def get(self, artifact_id: str) -> bytes:
        """The artifact's plaintext, after signature, digest and decryption checks."""
        where = f"artifact {artifact_id[:12]}"
        blob = self._blob(artifact_id)
        header = envelope.check(blob, expected_id=artifact_id, trusted=self._trusted, where=where)
        return envelope.open_payload(blob, header, self._keys, where=where)

    def rewrap(self, artifact_id: str, keys: KeyRing) -> bool:
        """Re-wrap the artifact's data key with `keys`' master key; the payload is kept byte for byte.

        Returns True when the file was rewritten (atomically), False when it was not encrypted or
        already wrapped by that key.
        """
        path = self._path(artifact_id)
        blob = self._files.read(path)
        where = f"artifact {artifact_id[:12]}"
        header = envelope.check(blob, expected_id=artifact_id, trusted=self._trusted, where=where)
        rewrapped = envelope.rewrap(blob, header, keys, where=where)
        if rewrapped is None:
            return False
        self._files.write(path, rewrapped)
        return True

    def ids(self) -> Iterator[str]:
        for path in self._files.list(self._files.join("objects")):
            name = path.rsplit("/", 1)[-1]
            if _ID.match(name):
                yield name

    def verify_all(self, *, decrypt: bool = True) -> VerifyReport:
        """Re-check every artifact; collect problems instead of stopping at the first."""
        report = VerifyReport()
        for path in self._files.list(self._files.join("objects")):
            name = path.rsplit("/", 1)[-1]
            if is_temp(name):
                report.leftover_temp_files += 1
                continue
            report.checked += 1
            if not _ID.match(name):
                report.problems.append(f"unexpected file in the store: {path}")
                continue
            try:
                blob = self._files.read(path)
                where = f"artifact {name[:12]}"
                header = envelope.check(blob, expected_id=name, trusted=self._trusted, where=where)
                if decrypt:
                    envelope.open_payload(blob, header, self._keys, where=where)
            except IntegrityError as exc:
                report.problems.append(exc.what)
        return report
