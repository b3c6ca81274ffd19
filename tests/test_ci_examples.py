"""The CI examples run real `keel` command lines: each one parses against the CLI's actual options.

Every `keel ...` line in examples/ci/ (YAML scripts, and the Jenkinsfile's `sh` steps) is tokenized like
a shell would (variables replaced by sample values, redirections and `&&` split off), then parsed by
the typer application itself (unknown options, missing required ones and bad values fail), and
`keel SUBCOMMAND --help` must exit 0.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from tests.helpers import ROOT, keel_here

CI = ROOT / "examples" / "ci"
SAMPLE = {"VERSION": "7", "KEEL_SPEC": "examples/adult/pipeline.yaml"}
OPERATORS = {"&&", "||", ";", "|", "&", "(", ")"}
REDIRECTS = {">", ">>", "<", "2>", "&>"}


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _scripts(path: Path) -> list[str]:
    text = path.read_text()
    if path.suffix in (".yml", ".yaml"):
        return list(_strings(yaml.safe_load(text)))
    # Jenkinsfile (Groovy): the shell text of sh '...' steps and script: '...' arguments
    return [m.group(2).replace("\\'", "'") for m in re.finditer(r"(sh\s*\(?\s*|script:\s*)'((?:[^'\\]|\\.)*)'", text)]


def _substitute(script: str) -> str:
    script = re.sub(r"\$\{\{[^}]*\}\}", "7", script)  # GitHub Actions expressions
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: SAMPLE.get(m.group(1), "x"), script)


def keel_commands(path: Path) -> list[list[str]]:
    """Argument lists of every `keel` invocation in a CI file."""
    commands: list[list[str]] = []
    for script in _scripts(path):
        for line in script.replace("\\\n", " ").splitlines():
            if "keel" not in line or line.lstrip().startswith("#"):
                continue
            lexer = shlex.shlex(_substitute(line), posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            segment: list[str] = []
            skip_next = False
            for token in [*lexer, ";"]:
                if skip_next:
                    skip_next = False
                elif token in REDIRECTS:
                    skip_next = True  # the file name after a redirection
                elif token in OPERATORS:
                    if segment[:1] == ["keel"]:
                        commands.append(segment[1:])
                    segment = []
                else:
                    segment.append(token)
    return commands


def _parse(args: list[str]) -> list[str]:
    """Parse `args` with the real typer app; returns the subcommand path (e.g. ['models', 'promote'])."""
    from keelml.cli.main import app

    command: Any = typer.main.get_command(app)
    path: list[str] = []
    rest = list(args)
    while hasattr(command, "commands"):  # a command group (typer ships its own click)
        name = rest.pop(0)
        sub = command.get_command(typer.Context(command), name)
        assert sub is not None, f"`keel {' '.join([*path, name])}` is not a command"
        command, path = sub, [*path, name]
    try:
        command.make_context(" ".join(["keel", *path]), rest)
    except Exception as exc:  # click's usage and parameter errors
        if not hasattr(exc, "format_message"):
            raise
        pytest.fail(f"`keel {' '.join(args)}`: {exc.format_message()}")
    return path


FILES = sorted(p for p in CI.iterdir() if p.is_file())


def test_every_ci_file_is_covered() -> None:
    assert [p.name for p in FILES] == ["Jenkinsfile", "github-actions.yml", "gitlab-ci.yml"]


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_keel_commands_in_ci_examples_match_the_cli(path: Path) -> None:
    commands = keel_commands(path)
    paths = [tuple(_parse(args)) for args in commands]
    used = set(paths)
    # train and gate, stage with infra validation, production, and a rollback: the real commands
    assert {("run",), ("verify",), ("models", "promote"), ("models", "rollback"), ("containerize",)} <= used
    promotions = [args for args, p in zip(commands, paths, strict=True) if p == ("models", "promote")]
    targets = {args[args.index("--to") + 1] for args in promotions}
    assert targets == {"staging", "production"}
    assert not any("--skip-infra-validation" in args for args in promotions)  # validation is never skipped
    for sub in used:
        result = keel_here(*sub, "--help")
        assert result.returncode == 0, (sub, result.stderr)


def test_the_parser_catches_a_wrong_command_line() -> None:
    """The check itself can fail: an old promote line (NAME/VERSION, no --reason) is refused."""
    with pytest.raises(pytest.fail.Exception, match="Missing argument 'version'"):
        _parse(["models", "promote", "adult-income/7", "--to", "staging"])
    with pytest.raises(pytest.fail.Exception, match="Missing option '--reason'"):
        _parse(["models", "promote", "adult-income", "7", "--to", "staging"])
    with pytest.raises(pytest.fail.Exception, match="No such option"):
        _parse(["models", "rollback", "adult-income", "--version", "3"])
    assert keel_commands(CI / "Jenkinsfile")[0][:2] == ["models", "rollback"]
