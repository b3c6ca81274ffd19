"""Untrusted names, versions, aliases and archive paths: traversal and injection shapes are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from keelml.errors import InputError
from keelml.names import (
    check_alias,
    check_artifact_id,
    check_member_path,
    check_name,
    check_version,
    contained,
    parse_model_ref,
)

HOSTILE = ["../x", "..", "..%2f", "%2e%2e/", "%2e%2e%2fetc", "/etc/passwd", "file:///etc/passwd", "file://x",
           "s3://bucket/m", "a\x00b", "a\\..\\b", "..\\x", "C:/x", "~root", "m/../../x", "a..b", "\u2025x",
           "\uff0e\uff0e\uff0fx", "a\nb", "x" * 64, "\\u002e\\u002e", "&#46;&#46;/x", "A", "-x", ""]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_names_are_refused(value: str) -> None:
    with pytest.raises(InputError):
        check_name(value)
    with pytest.raises(InputError):
        check_alias(value)
    with pytest.raises(InputError):
        parse_model_ref(value)


def test_messages_say_what_was_dangerous() -> None:
    cases = {"../x": "'..'", "..%2f": "encoded form", "/etc/passwd": "absolute path", "file://x": "URL",
             "a\x00b": "NUL byte", "a\\b": "backslash", "x" * 64: "too long", "\uff0e\uff0e": "non-ASCII"}
    for value, fragment in cases.items():
        with pytest.raises(InputError, match=fragment):
            check_name(value)
    with pytest.raises(InputError, match="absolute path"):
        parse_model_ref("/etc/passwd")


def test_good_names_and_refs() -> None:
    assert check_name("adult-income") == "adult-income"
    assert check_name("m.v2_x") == "m.v2_x"
    assert check_alias("production") == "production"
    assert parse_model_ref("adult-income") == ("adult-income", None)
    assert parse_model_ref("adult-income/2") == ("adult-income", 2)
    assert parse_model_ref("adult-income@staging") == ("adult-income", "staging")
    assert parse_model_ref("adult-income@latest") == ("adult-income", "latest")
    for bad in ("m/../1", "m/1/2", "m/x", "m@../prod", "m@prod/x", "m/01x", "m/\u0661"):
        with pytest.raises(InputError):
            parse_model_ref(bad)


def test_versions() -> None:
    assert check_version(3) == 3
    assert check_version("12") == 12
    for bad in ("0", 0, -1, "-1", "+1", " 1", "1.0", "\u0661", "1e3", "..", "1\x00", True, None, "9" * 10):
        with pytest.raises(InputError):
            check_version(bad)


def test_aliases_never_look_like_versions() -> None:
    for bad in ("1", "2x", "latest", "_x"):
        with pytest.raises(InputError):
            check_alias(bad)


def test_artifact_ids() -> None:
    assert check_artifact_id("a" * 64) == "a" * 64
    for bad in ("A" * 64, "a" * 63, "a" * 65, "../" + "a" * 61, "g" * 64, 5):
        with pytest.raises(InputError):
            check_artifact_id(bad)


def test_archive_member_paths() -> None:
    assert check_member_path("components/model") == "components/model"
    for bad in ("../x", "/etc/passwd", "components/../../x", "a//b", "a/./b", "./a", "a\\b", "a\x00b",
                "%2e%2e/x", "C:/x", "file://x", "a/" + "b" * 101, "", ".hidden/../x", "\u2025/x"):
        with pytest.raises(InputError):
            check_member_path(bad)


def test_contained_refuses_escapes_and_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    assert contained(root, "a", "b") == (root / "a" / "b").resolve()
    with pytest.raises(InputError, match="leaves the store root"):
        contained(root, "..", "x")
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(InputError, match="leaves the store root"):
        contained(root, "link", "x")


def test_spec_names_are_checked_too() -> None:
    from keelml.errors import SpecError
    from keelml.spec.pipeline import parse_spec

    with pytest.raises(SpecError, match="'..'"):
        parse_spec("name: a..b\ndata: {target: y, train: {path: x.csv}}\n")
