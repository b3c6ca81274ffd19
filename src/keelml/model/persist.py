"""Safe model persistence with skops: no pickle is ever loaded, only allowlisted types are built.

skops (and with it scikit-learn) is imported inside the functions that save, audit or load a model: a
fully cached run imports this module and never needs it.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from keelml.errors import DataError, IntegrityError
from keelml.model.trust import DEFAULT_POLICY, TrustPolicy


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
    except zipfile.BadZipFile:
        raise _refuse("refusing to load: the bytes are not a skops model file "
                      "(keelml never loads pickles)") from None
    try:
        untrusted = list(sio.get_untrusted_types(data=data))
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
        raise _refuse(f"refusing to load: the skops model file is malformed ({problem})") from None
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
