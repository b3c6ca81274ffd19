"""Turn a delimited text file's bytes into UTF-8 (what polars reads), whatever its declared encoding.

``utf8`` checks the bytes and passes them on unchanged (no copy); ``utf8-lossy`` replaces invalid
sequences with U+FFFD; any other Python codec name (latin-1, cp1252, utf-16, ...) decodes with Python
and re-encodes to UTF-8 chunk by chunk, so at most the input and its UTF-8 copy are held at once.
"""

from __future__ import annotations

import codecs
import io

import numpy as np
import pyarrow as pa

from keelml.errors import DataError

CHUNK_SIZE = 1 << 22


def to_utf8(data: bytes, encoding: str, location: str) -> bytes:
    """``data`` as UTF-8 bytes; bytes that do not decode are a DataError (unless ``utf8-lossy``)."""
    name = "utf-8" if encoding in ("utf8", "utf8-lossy") else codecs.lookup(encoding).name
    if name == "utf-8":
        if is_utf8(data):
            return data
        if encoding == "utf8-lossy":
            return data.decode("utf-8", errors="replace").encode("utf-8")
        raise _not_decodable(data, "utf-8", location)
    decoder = codecs.getincrementaldecoder(name)(errors="strict")
    out = io.BytesIO()
    view = memoryview(data)
    try:
        for start in range(0, len(data), CHUNK_SIZE):
            out.write(decoder.decode(view[start:start + CHUNK_SIZE]).encode("utf-8"))
        out.write(decoder.decode(b"", final=True).encode("utf-8"))
    except UnicodeError:
        raise _not_decodable(data, name, location) from None
    return out.getvalue()


def is_utf8(data: bytes) -> bool:
    """True when ``data`` is valid UTF-8 (checked by Arrow, without decoding into Python text)."""
    offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64))
    try:
        pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(data)).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _not_decodable(data: bytes, name: str, location: str) -> DataError:
    try:
        data.decode(name)
        where = ""
    except UnicodeDecodeError as exc:
        where = f" (bad byte at offset {exc.start})"
    except UnicodeError:
        where = ""
    if name == "utf-8":
        return DataError(
            f"{location} is not valid UTF-8{where}",
            expected="a UTF-8 encoded text file (or data.*.csv.encoding naming its encoding)",
            fix="set data.*.csv.encoding to the file's encoding (e.g. latin-1, cp1252, utf-16), convert the "
            "file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`), or set data.*.csv.encoding: utf8-lossy to "
            "replace undecodable bytes",
        )
    return DataError(
        f"{location} is not valid {name}{where}",
        expected=f"a text file encoded as {name}, as data.*.csv.encoding says",
        fix="set data.*.csv.encoding to the file's real encoding (utf8, latin-1, cp1252, utf-16 ...), "
        "or utf8-lossy to read it as UTF-8 replacing undecodable bytes",
    )
