"""Hostile strings: traversal in names, versions and aliases (encoded too), shell metacharacters, SSRF URLs."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.serve.conftest import Store
from typer.testing import CliRunner

from keelml.cli.main import app
from keelml.errors import InputError, KeelError
from keelml.monitor.webhook import WebhookRefused, post_json, resolve
from keelml.names import check_alias, check_name, check_version

TRAVERSAL = ["..", "../../etc/passwd", "..%2f..%2fkeys", "%2e%2e/", "%2e%2e%2f", "..\\..\\keys", "a\x00b",
             "\u2025", "\uff0e\uff0e\uff0fkeys", "/etc/passwd", "file:///etc/passwd", "~root", ".%00.", "..;/"]


@pytest.mark.parametrize("value", TRAVERSAL)
def test_traversal_refused_in_every_name_kind(value: str) -> None:
    for check in (check_name, check_alias, check_version):
        with pytest.raises(InputError):
            check(value)


def _marker_commands(marker: Path) -> list[str]:
    return [f"$(touch {marker})", f"`touch {marker}`", f"x; touch {marker}", f"x | touch {marker}",
            f"x && touch {marker}", f"x\ntouch {marker}"]


def _cli(store: Store, *args: str) -> tuple[int, str]:
    """The real command in process; a KeelError is what `keel` turns into its exit code (2 or 3)."""
    result = CliRunner().invoke(app, [*args, "--spec", str(store.spec)])
    if isinstance(result.exception, KeelError):
        return result.exception.exit_code, result.exception.what
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return 1, f"{type(result.exception).__name__}: {result.exception}"
    return result.exit_code, result.output


@pytest.mark.parametrize("template", [
    ["models", "show", "{v}"], ["models", "verify", "{v}"], ["models", "history", "{v}"],
    ["models", "show", "adult-income/{v}"], ["models", "show", "adult-income@{v}"],
    ["models", "promote", "{v}", "1", "--reason", "r"], ["models", "promote", "adult-income", "{v}", "--reason", "r"],
    ["models", "promote", "adult-income", "1", "--to", "{v}", "--reason", "r"],
    ["models", "rollback", "adult-income", "--alias", "{v}"],
], ids=["show", "verify", "history", "version", "alias", "promote-name", "promote-version", "promote-alias",
        "rollback-alias"])
def test_cli_refuses_traversal_and_shell_strings(store: Store, tmp_path: Path, template: list[str]) -> None:
    marker = tmp_path / "pwned"
    for value in [*TRAVERSAL[:8], *_marker_commands(marker)]:
        code, output = _cli(store, *[part.format(v=value) for part in template])
        assert code == 2, (value, output)
        assert "Traceback" not in output
    assert not marker.exists()
    assert not (Path(store.root).parent / "etc").exists()


def test_shell_metacharacters_in_a_reason_are_stored_as_text(store: Store, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    reason = f"ok $(touch {marker}) `touch {marker}`; touch {marker}"
    code, output = _cli(store, "models", "promote", "adult-income", "1", "--to", "canary", "--reason", reason)
    assert code == 0, output
    assert not marker.exists()
    project = store.open()
    try:
        records = project.audit.records(event="promotion")
    finally:
        project.close()
    assert any(reason in str(r["details"]) for r in records)


@pytest.mark.parametrize("name", ["$(touch {m})", "a;touch {m}", "`touch {m}`"])
def test_shell_metacharacters_in_an_api_key_name_never_run(store: Store, tmp_path: Path, name: str) -> None:
    marker = tmp_path / "pwned"
    code, _ = _cli(store, "keys", "create-api-key", "--name", name.format(m=marker))
    assert code != 0 or not marker.exists()
    assert not marker.exists()


def _no_dns(*_args: object, **_kw: object) -> list[tuple[object, ...]]:
    raise AssertionError("a refused URL must not even be resolved")


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "https://169.254.169.254/",
                                 "https://127.0.0.1/hook", "https://localhost/hook", "https://2130706433/",
                                 "https://0x7f000001/", "https://[::1]/", "https://[::ffff:169.254.169.254]/",
                                 "file:///etc/passwd", "gopher://127.0.0.1:25/_HELO", "ftp://example.org/",
                                 "https://user:pw@example.org/", "https://10.0.0.1/", "https://[fd00:ec2::254]/"])
def test_ssrf_webhook_urls_refused(url: str) -> None:
    with pytest.raises(WebhookRefused):
        post_json(url, {"alert": "x"}, timeout=1.0)


@pytest.mark.parametrize("scheme", ["file", "gopher", "http", "dict", "ldap"])
def test_ssrf_non_https_schemes_refused_before_any_lookup(scheme: str) -> None:
    with pytest.raises(WebhookRefused, match="only https"):
        resolve(f"{scheme}://example.org/", allow_private=False, resolver=_no_dns)


def test_ssrf_dns_answer_pointing_inside_is_refused() -> None:
    """A public-looking name that resolves to the metadata address (DNS rebinding) is refused."""
    def rebinding(*_args: object, **_kw: object) -> list[tuple[object, ...]]:
        return [(2, 1, 6, "", ("93.184.216.34", 443)), (2, 1, 6, "", ("169.254.169.254", 443))]

    with pytest.raises(WebhookRefused, match="metadata"):
        resolve("https://hooks.example.org/", allow_private=True, resolver=rebinding)
