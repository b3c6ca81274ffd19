"""Codecs turn step outputs into bytes and back. Data-plane codecs are registered by the pipeline."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Codec:
    """A named pair of functions: encode(obj) -> bytes, decode(bytes) -> obj."""

    name: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


def _json_encode(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


JSON = Codec("json", _json_encode, lambda data: json.loads(data))
TEXT = Codec("text", lambda obj: str(obj).encode("utf-8"), lambda data: data.decode("utf-8"))
BYTES = Codec("bytes", lambda obj: bytes(obj), lambda data: data)

BUILTIN: dict[str, Codec] = {c.name: c for c in (JSON, TEXT, BYTES)}
