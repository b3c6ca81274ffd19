"""Hostile files built by hand: zip archives with any sizes in their headers, and export archives signed
with a partner's (trusted) key holding whatever components the partner chooses."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
import tarfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keelml.registry import build_bundle
from keelml.store.envelope import canonical_json
from keelml.store.keys import KeyRing

SCHEMA = (b'{"__class__":"dict","__module__":"builtins","__loader__":"DictNode","content":{},'
          b'"protocol":2,"_skops_version":"0.16.0"}')


def deflate_filler(size: int, prefix: bytes = b"") -> tuple[bytes, int]:
    """`prefix` then spaces up to `size` bytes, raw-deflated (level 9) without ever holding them all in
    memory; returns (deflated bytes, CRC-32 of the inflated bytes)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts, crc = [packer.compress(prefix)], zlib.crc32(prefix)
    chunk, left = b" " * (1 << 20), size - len(prefix)
    while left > 0:
        piece = chunk[:left]
        parts.append(packer.compress(piece))
        crc, left = zlib.crc32(piece, crc), left - len(piece)
    return b"".join([*parts, packer.flush()]), crc


def zip_file(entries: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip of (name, stored bytes, method 0 or 8, declared uncompressed size, declared CRC-32) entries,
    the same sizes in the local headers and the central directory (no zip64)."""
    out, central = io.BytesIO(), io.BytesIO()
    for name, raw, method, size, crc in entries:
        offset = out.tell()
        encoded = name.encode()
        out.write(struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(raw), size,
                              len(encoded), 0) + encoded + raw)
        central.write(struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc, len(raw),
                                  size, len(encoded), 0, 0, 0, 0, 0, offset) + encoded)
    directory = central.getvalue()
    start = out.tell()
    out.write(directory)
    out.write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory), start, 0))
    return out.getvalue()


def schema_bomb(inflated: int) -> bytes:
    """A skops-looking model file whose deflated schema.json (valid JSON padded with spaces) inflates to
    `inflated` bytes, declared honestly in its headers."""
    raw, crc = deflate_filler(inflated, SCHEMA)
    return zip_file([("schema.json", raw, 8, inflated, crc)])


def understated_bomb(inflated: int, declared: int = 4096) -> bytes:
    """A model file whose deflated schema.json inflates to `inflated` bytes but whose headers declare only
    `declared`, with the CRC of those first bytes: zipfile would inflate it whole before truncating it."""
    raw, _ = deflate_filler(inflated, SCHEMA)
    _, crc = deflate_filler(declared, SCHEMA)
    return zip_file([("schema.json", raw, 8, declared, crc)])


def partner_archive(path: Path, keys: KeyRing, components: Mapping[str, tuple[bytes, str]], *, name: str = "m",
                    info: Mapping[str, Any] | None = None) -> Path:
    """An export archive of `components` ({part: (plaintext, codec)}), signed with `keys` as
    `keel models export` would sign it: what a holder of a trusted partner key can send. A verdict
    names the model and metrics it judged, as the partner's gate would have written it."""
    components = dict(components)
    if "verdict" in components:
        verdict = json.loads(components["verdict"][0])
        verdict.setdefault("judged", {part: hashlib.sha256(components[part][0]).hexdigest()
                                      for part in ("model", "metrics") if part in components})
        components["verdict"] = (canonical_json(verdict), components["verdict"][1])
    digests = {part: hashlib.sha256(data).hexdigest() for part, (data, _) in components.items()}
    bundle = build_bundle(name=name, components=digests, codecs={p: c for p, (_, c) in components.items()},
                          info=dict(info or {}), keys=keys)
    header = {"format": "keelml.export/1", "name": name, "version": 1, "bundle": "00" * 32, "signed_by": keys.key_id,
              "exported_at": 0, "components": {}, "lineage": {}}
    members = {"keel-export.json": canonical_json(header),
               "keel-export.sig": base64.b64encode(keys.sign(canonical_json(header))) + b"\n",
               "manifest.json": canonical_json(bundle["manifest"]),
               "manifest.sig": bundle["signature"].encode() + b"\n",
               **{f"components/{part}": data for part, (data, _) in components.items()}}
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for member, data in members.items():
            entry = tarfile.TarInfo(member)
            entry.size = len(data)
            tar.addfile(entry, io.BytesIO(data))
    return path


def json_parts(passed: bool = True) -> dict[str, tuple[bytes, str]]:
    """Every component but the model, as a real bundle has them."""
    contract = {"target": "y", "task": "binary", "classes": ["0", "1"], "columns": []}
    return {"contract": (canonical_json(contract), "json"),
            "metrics": (canonical_json({"primary": {"name": "roc_auc", "value": 0.9}}), "json"),
            "cv": (canonical_json({"folds": 2}), "json"),
            "verdict": (canonical_json({"passed": passed, "reason": "test gate"}), "json")}


def halve(values: Any) -> Any:
    """A user function a partner's model calls (inside a FunctionTransformer)."""
    return values / 2


def partner_model() -> bytes:
    """A fitted pipeline needing two types beyond keelml's allowlist: a user function and a custom class."""
    import numpy as np
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer
    from tests.model.custom_estimators import ShrunkLinearRegressor

    from keelml.model.persist import dump_model

    pipeline = Pipeline([("prep", FunctionTransformer(halve)), ("model", ShrunkLinearRegressor())])
    x = np.arange(12.0).reshape(-1, 2)
    return dump_model(pipeline.fit(x, x[:, 0] * 3 + 1))


def eval_model(marker: Path) -> bytes:
    """The issue's attack: `builtins.eval` wrapped in functools.partial inside a FunctionTransformer;
    transforming anything with it would create `marker`."""
    import functools

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    command = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    return bytes(sio.dumps(FunctionTransformer(functools.partial(eval, command))))
