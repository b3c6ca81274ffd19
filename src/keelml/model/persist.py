"""Safe model persistence with skops: no pickle is ever loaded, only allowlisted types are built.

skops (and with it scikit-learn) is imported inside the functions that save, audit or load a model: a
fully cached run imports this module and never needs it.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from typing import Any

from keelml.errors import DataError, IntegrityError
from keelml.model.trust import DEFAULT_POLICY, TrustPolicy

# Bounds checked from the zip's central directory before skops reads a byte of a model file, so a small
# archive cannot make the audit decompress gigabytes (skops reads schema.json and every array it names
# into memory while auditing). keelml writes model files uncompressed (skops' default, kept by
# dump_model), so its own files have a ratio of 1; a 1 GiB model is far beyond any model keelml's tests
# train (a 300-tree random forest on 5,000 rows is 33 MiB), and is also the largest entry an import
# archive may hold.
MAX_MODEL_BYTES = 1 << 30
"""The most a model file's entries may declare uncompressed, all together."""
MAX_COMPRESSION_RATIO = 20
"""The most a model file's entries may declare uncompressed per byte of the file (beyond RATIO_FLOOR)."""
RATIO_FLOOR = 1 << 20
"""Declared sizes up to this are never refused for their ratio (tiny files compress well)."""
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
_CHUNK = 1 << 16


def untrusted_types(data: bytes, policy: TrustPolicy = DEFAULT_POLICY) -> list[str]:
    """Types in skops bytes that neither skops nor the trust policy allow (sorted)."""
    import skops.io as sio

    allowed = policy.allowed()
    return sorted(t for t in sio.get_untrusted_types(data=data) if t not in allowed)


def check_loadable(data: bytes, policy: TrustPolicy = DEFAULT_POLICY) -> None:
    """DataError if load_model would refuse these freshly dumped bytes (say so when saving, not loading)."""
    offending = untrusted_types(data, policy)
    if offending:
        raise DataError(
            "the trained model holds type(s) keelml will not load: " + ", ".join(offending),
            expected="only the declared estimator class, scikit-learn, numpy and keelml types",
            fix="keep other objects (callables, custom classes) out of the estimator's parameters and fitted state",
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            check_sizes(archive, data)
    except IntegrityError as exc:
        raise DataError(f"the trained model is too large for keelml to load back: {exc.what}",
                        expected=exc.expected,
                        fix="train a smaller model (fewer or shallower trees, fewer features)") from None


def dump_model(model: Any) -> bytes:
    """The model as skops bytes (a zip of JSON schema and numpy arrays; never a pickle)."""
    import skops.io as sio

    try:
        data: bytes = sio.dumps(model)
    except (RecursionError, TypeError) as exc:
        raise DataError(
            f"the trained model cannot be saved in the safe skops format: {type(exc).__name__}: {exc}",
            expected="a model built from keelml's catalog with default early-stopping scoring",
            fix="remove model.params entries such as `scoring` that store callables on the model",
        ) from None
    return _deterministic_zip(data)


def _deterministic_zip(data: bytes) -> bytes:
    """The same archive in a canonical form, so the same model always has the same digest.

    skops names arrays and shared objects after Python object ids (memory addresses) and stamps
    zip entries with the current time. Ids are renumbered in schema order, array files renamed to
    match, and timestamps fixed; loading is unaffected. Without this, re-training an identical
    model would produce a new artifact id and a new registry version.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as src:
        schema = json.loads(src.read("schema.json"))
        ids: dict[int, int] = {}
        files: dict[str, str] = {}

        def canon(node: Any) -> Any:
            if isinstance(node, dict):
                out: dict[str, Any] = {}
                for key, value in node.items():
                    if key == "__id__" and isinstance(value, int):
                        out[key] = ids.setdefault(value, len(ids) + 1)
                    elif key == "file" and isinstance(value, str) and value in src.namelist():
                        out[key] = files.setdefault(value, f"{len(files) + 1}{value[value.rfind('.'):]}")
                    else:
                        out[key] = canon(value)
                return out
            if isinstance(node, list):
                return [canon(item) for item in node]
            return node

        schema = canon(schema)
        schema_bytes = json.dumps(schema, sort_keys=True, separators=(",", ":")).encode()
        entries: list[tuple[str, bytes, int]] = [("schema.json", schema_bytes, zipfile.ZIP_STORED)]
        for info in src.infolist():
            if info.filename == "schema.json":
                continue
            if info.filename not in files:
                raise DataError(f"unexpected entry {info.filename!r} in the skops archive",
                                expected="arrays referenced by the schema", fix="report this as a keelml bug")
            entries.append((files[info.filename], src.read(info.filename), info.compress_type))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name, payload, compression in sorted(entries, key=lambda e: e[0]):
            fixed = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            fixed.compress_type = compression
            dst.writestr(fixed, payload)
    return out.getvalue()


def _refuse(what: str) -> IntegrityError:
    return IntegrityError(
        what,
        expected="a skops model file written by keelml, containing only allowlisted types",
        fix="retrain the model with keelml; keelml never loads pickles or unknown types",
    )


def audit_model(data: bytes, policy: TrustPolicy = DEFAULT_POLICY) -> list[str]:
    """Check model bytes without building anything; return the allowlisted non-default types they name.

    ``policy`` (keelml's allowlist plus the functions and classes the project's spec declares) is
    the only thing trusted. Raises IntegrityError for pickles, non-skops bytes, malformed files and
    files naming any other type or function (an undeclared function is named, with the spec key that
    declares it). Only skops' schema (JSON) is read: no object is constructed.
    """
    untrusted = _named_types(data)
    allowed = policy.allowed()
    offending = sorted(t for t in untrusted if t not in allowed)
    if offending:
        functions = _function_refs(data)
        if all(t in functions for t in offending):  # only functions: name the spec key that declares them
            refs = ", ".join(repr(functions[t]) for t in offending)
            raise IntegrityError(
                "refusing to load a model that calls function(s) not declared in preprocess.functions: "
                + ", ".join(offending),
                expected="every function the model calls listed in the spec's preprocess.functions "
                         "(keelml loads only allowlisted types and declared functions)",
                fix=f"if you wrote {refs} and trust it, add it to preprocess.functions in the spec; "
                    "otherwise do not load this model",
            )
        raise _refuse(
            "refusing to load a model containing untrusted type(s): " + ", ".join(offending)
            + " (keelml only loads allowlisted types and never loads pickles)"
        )
    return untrusted


def extra_types(data: bytes, policy: TrustPolicy = DEFAULT_POLICY) -> list[str]:
    """The types a model file names beyond ``policy`` (sorted), after the checks `audit_model` makes first
    (pickle, not skops, size bounds, malformed): what an import must be allowed explicitly."""
    allowed = policy.allowed()
    return sorted(t for t in _named_types(data) if t not in allowed)


def _named_types(data: bytes) -> list[str]:
    """The non-default types skops finds in a model file; IntegrityError for anything that is not a sound,
    bounded skops file (checked before skops reads it)."""
    import skops.io as sio

    if not isinstance(data, bytes | bytearray | memoryview):
        raise _refuse(f"model data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if data.startswith(b"\x80"):
        raise _refuse("refusing to load a pickle: keelml never loads pickles (they can run arbitrary code)")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if "schema.json" not in archive.namelist():
                raise _refuse("refusing to load: the bytes are a zip file but not a skops model")
            check_sizes(archive, data)
    except zipfile.BadZipFile:
        raise _refuse("refusing to load: the bytes are not a skops model file "
                      "(keelml never loads pickles)") from None
    try:
        return list(sio.get_untrusted_types(data=data))
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
        raise _refuse(f"refusing to load: the skops model file is malformed ({problem})") from None


def check_sizes(archive: zipfile.ZipFile, data: bytes) -> None:
    """Refuse a model file whose entries would cost more memory than the bounds allow, reading only the
    central directory (and, for a deflated entry, inflating it in 64 KiB pieces that are counted, not kept,
    so a header that understates an entry's size is caught too)."""
    declared = 0
    for info in archive.infolist():
        method = _METHODS.get(info.compress_type)
        if method is None:
            raise _refuse(f"refusing to load: entry {info.filename!r} of the model file uses compression method "
                          f"{info.compress_type} (keelml reads only stored or deflated entries)")
        if method == "stored" and info.file_size != info.compress_size:
            raise _refuse(f"refusing to load: entry {info.filename!r} of the model file declares "
                          f"{info.file_size} bytes but stores {info.compress_size}")
        declared += info.file_size
    bound = min(MAX_MODEL_BYTES, max(RATIO_FLOOR, MAX_COMPRESSION_RATIO * len(data)))
    if declared > bound:
        raise IntegrityError(
            f"refusing to load: the model file ({len(data)} bytes) declares {declared} bytes uncompressed, "
            f"more than the {bound} allowed (a compression bomb?); nothing was decompressed",
            expected=f"at most {MAX_MODEL_BYTES} bytes uncompressed and at most {MAX_COMPRESSION_RATIO} times "
                     "the file's size (keelml writes model files uncompressed)",
            fix="do not load this model file; retrain the model with keelml",
        )
    for info in archive.infolist():
        if info.compress_type == zipfile.ZIP_DEFLATED:
            _check_inflated(data, info)


def _check_inflated(data: bytes, info: zipfile.ZipInfo) -> None:
    """Inflate one deflated entry in pieces, refusing it as soon as it exceeds its declared size."""
    start = info.header_offset
    if data[start:start + 4] != b"PK\x03\x04":
        raise _refuse(f"refusing to load: entry {info.filename!r} of the model file has no local header")
    name_length, extra_length = struct.unpack("<HH", data[start + 26:start + 30])
    begin = start + 30 + name_length + extra_length
    raw = memoryview(data)[begin:begin + info.compress_size]
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    produced = 0
    try:
        for offset in range(0, len(raw), _CHUNK):
            pending: bytes | memoryview = raw[offset:offset + _CHUNK]
            while pending:
                produced += len(inflater.decompress(pending, _CHUNK))
                if produced > info.file_size:
                    raise _refuse(f"refusing to load: entry {info.filename!r} of the model file inflates beyond "
                                  f"the {info.file_size} bytes it declares (a compression bomb?)")
                pending = inflater.unconsumed_tail
    except zlib.error as exc:
        raise _refuse(f"refusing to load: entry {info.filename!r} of the model file is corrupt ({exc})") from None


def load_model(data: bytes, policy: TrustPolicy = DEFAULT_POLICY) -> Any:
    """Load skops bytes after `audit_model` found every type they would build allowed by ``policy``.

    Raises IntegrityError for pickles, non-skops bytes and files naming any other type.
    """
    import skops.io as sio

    untrusted = audit_model(data, policy)
    try:
        return sio.loads(bytes(data), trusted=untrusted)
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
        raise _refuse(f"refusing to load: the skops model file is corrupt ({problem})") from None


def _function_refs(data: bytes) -> dict[str, str]:
    """The functions a skops file refers to: skops name (module.function) -> module:function."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))
    found: dict[str, str] = {}
    pending: list[Any] = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if node.get("__loader__") == "FunctionNode":
                module, name = str(node.get("__module__")), str(node.get("__class__"))
                found[f"{module}.{name}"] = f"{module}:{name}"
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found
