"""Untrusted names: model names, versions, aliases, artifact ids and archive paths, checked in one place.

Every value is checked for the shapes of path traversal and URL injection first (NUL and control
characters, separators, `..`, absolute paths, URL schemes, percent-encoded and escaped forms,
non-ASCII look-alikes, over-long input), so the error says what was dangerous about it, and then
against a strict pattern. Nothing here touches the file system except `contained`.
"""

from __future__ import annotations

import re
from pathlib import Path

from keelml.errors import InputError

PRODUCTION = "production"  # the alias servers follow by default and the gate compares against

MAX_NAME = 63
MAX_MEMBER_PATH = 255
MAX_TEXT = 2000
RESERVED_ALIASES = frozenset({"latest"})

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_VERSION = re.compile(r"^[0-9]{1,9}$")
_ARTIFACT_ID = re.compile(r"^[0-9a-f]{64}$")
_MEMBER_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}|\\[xuUN0-7]|&#")

NAME_RULE = "1-63 characters: lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
ALIAS_RULE = "1-63 characters: lowercase letters, digits, '_' or '-', starting with a letter"


def hazard(text: str, *, max_length: int = MAX_NAME) -> str | None:
    """What makes text unsafe as a name or path component, or None."""
    if len(text) > max_length:
        return f"is too long ({len(text)} characters; at most {max_length})"
    if "\x00" in text:
        return "contains a NUL byte"
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "contains a control character"
    if _ESCAPE.search(text) or "%" in text:
        return "contains an encoded form (percent-encoding or an escape sequence)"
    if "\\" in text:
        return "contains a backslash (a path separator)"
    if text.startswith(("/", "~")) or (re.match(r"^[A-Za-z]:", text) and "/" in text):
        return "is an absolute path"
    if _SCHEME.match(text):
        return "looks like a URL (it starts with a scheme such as file:)"
    if ".." in text:
        return "contains '..'"
    if "/" in text:
        return "contains a path separator"
    if not text.isascii():
        return "contains non-ASCII characters (look-alike forms of '.', '/' and letters are refused)"
    return None


def _refuse(what: str, value: str, problem: str, rule: str) -> InputError:
    return InputError(f"{what} {_show(value)} {problem}", expected=rule,
                      fix=f"use a plain {what} such as 'adult-income'" if "name" in what else f"give a valid {what}")


def _show(value: str) -> str:
    """A printable, bounded rendering of hostile input for messages."""
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "...'"


def check_name(value: object, *, what: str = "model name") -> str:
    """A model (or trusted-key) name; raises InputError for anything else."""
    if not isinstance(value, str) or not value:
        raise InputError(f"{what} must be a non-empty string", expected=NAME_RULE, fix=f"give a {what}")
    problem = hazard(value)
    if problem:
        raise _refuse(what, value, problem, NAME_RULE)
    if not _NAME.match(value):
        raise _refuse(what, value, "has characters that are not allowed", NAME_RULE)
    return value


def check_alias(value: object) -> str:
    """An alias name such as production or staging (never all digits, never `latest`)."""
    if not isinstance(value, str) or not value:
        raise InputError("alias must be a non-empty string", expected=ALIAS_RULE, fix="e.g. --to production")
    problem = hazard(value)
    if problem:
        raise _refuse("alias", value, problem, ALIAS_RULE)
    if not _ALIAS.match(value):
        raise _refuse("alias", value, "has characters that are not allowed", ALIAS_RULE)
    if value in RESERVED_ALIASES:
        raise InputError(f"alias {value!r} is reserved (it always means the newest version)",
                         expected="another alias name", fix="use e.g. production or staging")
    return value


def check_version(value: object) -> int:
    """A version number (an int or a string of ASCII digits), 1 or more."""
    if isinstance(value, bool):
        value = str(value)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _VERSION.match(value):
        number = int(value)
    else:
        shown = _show(value) if isinstance(value, str) else type(value).__name__
        problem = hazard(value) if isinstance(value, str) else None
        raise InputError(f"version {shown} " + (problem or "is not a version number"),
                         expected="a positive whole number such as 3", fix="list versions with `keel models show NAME`")
    if not 1 <= number <= 999_999_999:
        raise InputError(f"version {number} is out of range", expected="1 to 999999999",
                         fix="list versions with `keel models show NAME`")
    return number


def check_artifact_id(value: object) -> str:
    """An artifact id: exactly 64 lowercase hex characters (a SHA-256 digest)."""
    if not isinstance(value, str) or not _ARTIFACT_ID.match(value):
        shown = _show(value) if isinstance(value, str) else type(value).__name__
        raise InputError(f"{shown} is not an artifact id", expected="64 lowercase hex characters (a SHA-256 digest)",
                         fix="copy the id from `keel runs show RUN` or `keel models show NAME/VERSION`")
    return value


def check_member_path(value: str) -> str:
    """A relative path inside an archive: parts of [A-Za-z0-9._-] joined by '/', no '..', no absolute."""
    problem = None
    if value.startswith("/") or re.match(r"^[A-Za-z]:", value):
        problem = "is an absolute path"
    else:
        parts = value.split("/")
        problem = next((p for p in (hazard(part, max_length=100) for part in parts) if p), None)
        if problem is None and (not value or len(value) > MAX_MEMBER_PATH
                                or not all(_MEMBER_PART.match(part) for part in parts)):
            problem = "is not a plain relative path"
    if problem:
        raise InputError(f"archive entry {_show(value)} {problem}",
                         expected="plain relative paths (letters, digits, '.', '_', '-', and '/')",
                         fix="only import archives written by `keel models export`")
    return value


def parse_model_ref(text: str) -> tuple[str, str | int | None]:
    """Split NAME, NAME/VERSION or NAME@ALIAS into (name, version, alias or None); all checked."""
    if not isinstance(text, str) or not text:
        raise InputError("model reference must be a non-empty string", expected="NAME, NAME/VERSION or NAME@ALIAS",
                         fix="e.g. adult-income/2 or adult-income@production")
    problem = hazard(text.replace("/", "", 1).replace("@", "", 1), max_length=2 * MAX_NAME + 1)
    if text.startswith("/"):
        problem = "is an absolute path"
    if problem and "separator" not in problem:
        raise InputError(f"model reference {_show(text)} {problem}", expected="NAME, NAME/VERSION or NAME@ALIAS",
                         fix="e.g. adult-income/2 or adult-income@production")
    if "/" in text:
        name, _, version = text.partition("/")
        return check_name(name), check_version(version)
    if "@" in text:
        name, _, alias = text.partition("@")
        return check_name(name), (alias if alias == "latest" else check_alias(alias))
    return check_name(text), None


def check_text(value: str | None, *, what: str, required: bool = False, max_length: int = MAX_TEXT) -> str | None:
    """Free text (a reason, an actor): printable, bounded; required ones must not be blank."""
    if value is None or not value.strip():
        if required:
            raise InputError(f"{what} is required", expected=f"a short {what}", fix=f"pass --{what} '...'")
        return None
    if len(value) > max_length or any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value):
        raise InputError(f"{what} must be printable text of at most {max_length} characters",
                         expected="no control characters or NUL bytes", fix=f"shorten or clean the {what}")
    return value.strip()


def contained(root: Path, *parts: str) -> Path:
    """root/parts, refusing any result that would resolve outside root (symlinks included)."""
    base = root.resolve()
    target = base.joinpath(*parts).resolve()
    if target != base and base not in target.parents:
        raise InputError(f"path {_show('/'.join(parts))} leaves the store root {base}",
                         expected="a location inside the store", fix="use plain names without '..' or links")
    return target
