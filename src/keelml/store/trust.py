"""Trusted public keys of other projects: keys/trusted/<name>.pem, used to verify imported bundles."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

from keelml.errors import KeyMaterialError
from keelml.names import check_name, contained
from keelml.store.atomic import atomic_write_bytes, private_dirs
from keelml.store.keys import KeyRing, public_key_id

TRUSTED_DIR = "trusted"
MAX_PEM = 4096


def public_key_pem(keys: KeyRing) -> bytes:
    """This project's public signing key in PEM (safe to share)."""
    return keys.public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def parse_public_pem(data: bytes, *, where: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM bytes; anything else (a private key too) is refused."""
    problem = None
    if len(data) > MAX_PEM:
        problem = "is too large to be a public key"
    elif b"PRIVATE KEY" in data:
        problem = "holds a PRIVATE key; never share or trust private keys"
    else:
        try:
            key = load_pem_public_key(data)
        except (ValueError, TypeError):
            key = None
        if isinstance(key, Ed25519PublicKey):
            return key
        problem = "is not an Ed25519 public key in PEM format"
    raise KeyMaterialError(f"{where} {problem}",
                           expected="the output of `keel keys show-public` of the exporting project",
                           fix="ask the exporting project for `keel keys show-public > their.pem`")


class TrustStore:
    """The public keys this project accepts exported bundles from, by name."""

    def __init__(self, keys_dir: Path) -> None:
        self.directory = keys_dir / TRUSTED_DIR

    def add(self, name: str, pem: bytes, *, own: KeyRing | None = None) -> str:
        """Trust a public key under `name`; returns its key id. Re-adding the same key is a no-op."""
        check_name(name, what="trusted key name")
        key = parse_public_pem(pem, where="the public key file")
        key_id = public_key_id(key)
        if own is not None and key_id == own.key_id:
            raise KeyMaterialError("that is this project's own key (always trusted)", expected="another project's key",
                                   fix="nothing to do")
        for other_name, (other_id, _) in self.keys().items():
            if other_id == key_id and other_name != name:
                raise KeyMaterialError(f"key {key_id} is already trusted as {other_name!r}",
                                       expected="each key trusted once", fix=f"use the name {other_name!r}")
        private_dirs(self.directory)
        path = contained(self.directory, f"{name}.pem")
        if path.exists():
            existing = parse_public_pem(path.read_bytes(), where=str(path))
            if public_key_id(existing) != key_id:
                raise KeyMaterialError(f"a different key is already trusted as {name!r}",
                                       expected="a new name for a new key",
                                       fix="choose another --name (keys are never silently replaced)")
            return key_id
        atomic_write_bytes(path, key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
        return key_id

    def keys(self) -> dict[str, tuple[str, Ed25519PublicKey]]:
        """name -> (key id, public key) of every trusted key."""
        found: dict[str, tuple[str, Ed25519PublicKey]] = {}
        if not self.directory.is_dir():
            return found
        for path in sorted(self.directory.glob("*.pem")):
            if path.is_symlink() or not path.is_file():
                continue
            key = parse_public_pem(path.read_bytes(), where=str(path))
            found[path.stem] = (public_key_id(key), key)
        return found

    def find(self, key_id: str) -> tuple[str, Ed25519PublicKey] | None:
        """(name, key) of the trusted key with this id, or None."""
        return next(((name, key) for name, (kid, key) in self.keys().items() if kid == key_id), None)
