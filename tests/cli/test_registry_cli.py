"""The registry through the real `keel` command: aliases, audit, lineage, export/import, keys, hostile input.

One small real project (the head of the Adult data, logistic regression, a canary planted in the
training data) is trained once per module, in a git work tree; each test works on its own copy.
Most commands run in-process through the real entry point (`keelml.cli.main.main`), which is what the
`keel` script calls; a few run as real subprocesses where the process boundary matters.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
from pathlib import Path

import pytest
from tests.helpers import keel, small_adult_project

CANARY = "CANARY-7f3a9c2e"
NAME = "adult-income"


def _git(directory: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(directory), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with versions 1 and 2 of adult-income (v2 differs only in its evaluation)."""
    directory = tmp_path_factory.mktemp("registry-cli")
    spec = small_adult_project(directory, train_rows=600, test_rows=300, cv_folds=2, bootstrap_rounds=10)
    spec.write_text(spec.read_text().replace("family: hist_gradient_boosting", "family: logistic_regression"))
    lines = (directory / "adult.data").read_text().splitlines()
    for i in range(0, len(lines), 40):  # a rare native-country value: the contract will list it
        parts = lines[i].split(", ")
        parts[13] = CANARY
        lines[i] = ", ".join(parts)
    (directory / "adult.data").write_text("\n".join(lines) + "\n")
    (directory / ".gitignore").write_text(".keel/\n")
    if shutil.which("git"):
        _git(directory, "init", "-q")
        _git(directory, "add", "-A")
        _git(directory, "commit", "-q", "-m", "project")
    for version in (1, 2):
        if version == 2:  # only the evaluation changes: a second bundle, hence version 2
            spec.write_text(spec.read_text().replace("bootstrap_rounds: 10", "bootstrap_rounds: 12"))
        result = keel("run", str(spec))
        assert result.returncode == 0, result.stderr
    return directory


@pytest.fixture
def project(trained: Path, tmp_path: Path) -> Path:
    """A private copy of the trained project; returns its spec."""
    copy = tmp_path / "p"
    shutil.copytree(trained, copy, symlinks=True)
    return copy / "pipeline.yaml"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`keel ARGS` in this process: the real entry point, exit code and both streams captured."""
    from keelml.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code
    return subprocess.CompletedProcess(["keel", *args], int(code or 0), out.getvalue(), err.getvalue())


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def _fails(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    return result.stderr


def test_promote_promote_rollback_history_and_audit(project: Path) -> None:
    spec = str(project)
    _ok(cli("models", "promote", NAME, "1", "--reason", "first release", "-f", spec))
    _ok(cli("models", "promote", NAME, "2", "--to", "production", "--reason", "better [/bold] recall",
            "--actor", "ci-bot", "-f", spec))
    out = _ok(cli("models", "rollback", NAME, "-f", spec))
    assert f"{NAME}@production: v2 -> v1 (rollback by" in out
    history = json.loads(_ok(cli("models", "history", NAME, "--json", "-f", spec)))
    assert history["aliases"] == {"production": 1}
    assert [(h["action"], h["from_version"], h["to_version"]) for h in history["history"]] == [
        ("promotion", None, 1), ("promotion", 1, 2), ("rollback", 2, 1)]
    assert history["history"][1]["actor"] == "ci-bot" and history["history"][1]["reason"] == "better [/bold] recall"
    assert "[/bold]" in _ok(cli("models", "history", NAME, "-f", spec))  # printed as text, not markup
    assert f"{NAME} v1 (production): verified" in _ok(cli("models", "verify", f"{NAME}@production", "-f", spec))
    shown = json.loads(_ok(cli("models", "show", f"{NAME}@production", "--json", "-f", spec)))
    assert shown["version"]["version"] == 1
    audit = json.loads(_ok(cli("audit", "--verify", "--json", "-f", spec)))
    events = [r["event"] for r in audit["records"]]
    assert [e for e in events if e in ("promotion", "rollback")] == ["promotion", "promotion", "rollback"]
    assert audit["verified"]["ok"] and events.count("infra_validation") == 2  # promotions only, not the rollback
    assert events.count("registration") == 2 and "key_creation" in events
    # Edit a middle record (the first promotion) directly in the database.
    seq = next(r["seq"] for r in audit["records"] if r["event"] == "promotion")
    with sqlite3.connect(project.parent / ".keel" / "keel.db") as conn:
        conn.execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = ?", (seq,))
    _fails(keel("audit", "--verify", "-f", spec), 3, f"audit record {seq} (promotion by someone-else",
           "was altered")
    _fails(cli("verify", spec), 3, f"audit record {seq}")
    _fails(cli("models", "rollback", NAME, "--to", "1", "-f", spec), 2, "already v1")


def test_lineage_of_a_version_and_of_a_dataset(project: Path) -> None:
    spec = str(project)
    facts = json.loads(_ok(cli("lineage", f"{NAME}/1", "--json", "-f", spec)))
    directory = project.parent
    train_digest = hashlib.sha256((directory / "adult.data").read_bytes()).hexdigest()
    assert facts["data_digests"] == {"train": train_digest,
                                     "test": hashlib.sha256((directory / "adult.test").read_bytes()).hexdigest()}
    from keelml.data.contract import contract_from_yaml

    report_contract = next((directory / ".keel-reports").glob("*/contract.yaml"))
    shown = report_contract.read_text()  # rare categories withheld: the header names the full contract's version
    assert facts["contract_version"] == contract_from_yaml(shown, "c").version or (
        f"(contract version {facts['contract_version']})" in shown and "withheld" in shown)
    assert facts["parameters"]["model"]["family"] == "logistic_regression"
    assert facts["parameters"]["evaluate"]["bootstrap_rounds"] == 10
    assert facts["spec"]["path"].endswith("pipeline.yaml") and len(facts["spec"]["digest"]) == 64
    assert facts["code"]["keelml"] and facts["run_id"]
    if shutil.which("git"):
        head = subprocess.run(["git", "-C", str(directory), "rev-parse", "HEAD"], capture_output=True, text=True)
        assert facts["code"]["git_commit"] == head.stdout.strip()
    text = _ok(cli("lineage", f"{NAME}/2", "-f", spec))
    assert "contract:   version" in text and "run:" in text and "parameters:" in text
    fed = json.loads(_ok(cli("lineage", "--data", train_digest[:12], "--json", "-f", spec)))
    assert [(f["version"], f["role"]) for f in fed] == [(1, "train"), (2, "train")]
    _fails(cli("lineage", "--data", "../etc", "-f", spec), 2, "is not a data digest")


def test_the_canary_is_stored_nowhere_in_plaintext_and_a_wrong_key_fails_cleanly(project: Path) -> None:
    store = project.parent / ".keel"
    assert CANARY in (project.parent / "adult.data").read_text()
    leaks = [p for p in store.rglob("*") if p.is_file() and CANARY.encode() in p.read_bytes()]
    assert leaks == []
    # run reports are the human-readable output: plaintext, written next to the store (.keel-reports/)
    master = store / "keys" / "master.key"
    master.write_bytes(__import__("base64").b64encode(os.urandom(32)) + b"\n")
    spec = str(project)
    for command in (("models", "verify", f"{NAME}/1"), ("models", "show", f"{NAME}/1"), ("lineage", f"{NAME}/1"),
                    ("models", "export", f"{NAME}/1", "-o", str(project.parent / "x.keel")),
                    ("models", "promote", NAME, "1", "--reason", "x")):
        _fails(cli(*command, "-f", spec), 3, "cannot decrypt with this project's master key")
    _fails(cli("verify", spec), 3, "cannot decrypt")
    _fails(cli("run", spec), 3, "cannot decrypt")
    os.chmod(master, 0o644)
    _fails(cli("models", "verify", f"{NAME}/1", "-f", spec), 2, "chmod 600")


def test_export_import_between_projects_needs_trust(project: Path, tmp_path: Path) -> None:
    spec = str(project)
    archive = tmp_path / "bundle.keel"
    _ok(cli("models", "promote", NAME, "2", "--reason", "ship", "-f", spec))
    _ok(cli("models", "export", f"{NAME}@production", "-o", str(archive), "-f", spec))
    other = tmp_path / "other"
    _ok(cli("init", str(other)))
    other_spec = str(other / "pipeline.yaml")
    _fails(cli("models", "import", str(archive), "-f", other_spec), 3, "does not trust", "keel keys trust")
    pem = tmp_path / "team-a.pem"
    pem.write_text(_ok(cli("keys", "show-public", "-f", spec)))
    assert "PRIVATE" not in pem.read_text()
    _ok(cli("keys", "trust", str(pem), "--name", "team-a", "-f", other_spec))
    out = _ok(cli("models", "import", str(archive), "-f", other_spec))
    assert f"registered new version {NAME} v1" in out
    facts = json.loads(_ok(cli("lineage", f"{NAME}/1", "--json", "-f", other_spec)))
    assert facts["origin"]["trusted_as"] == "team-a" and facts["origin"]["version"] == 2
    _ok(cli("models", "verify", NAME, "-f", other_spec))
    events = [r["event"] for r in json.loads(_ok(cli("audit", "--json", "-f", other_spec)))["records"]]
    assert {"key_creation", "key_trust", "registration", "import", "verification_failure"} <= set(events)
    _fails(cli("keys", "trust", str(other / ".keel" / "keys" / "signing.key"), "--name", "x", "-f", other_spec),
           2, "not an Ed25519 public key")


def test_keys_rotate_then_everything_still_verifies(project: Path) -> None:
    spec = str(project)
    keys = project.parent / ".keel" / "keys"
    old = (keys / "master.key").read_bytes()
    out = _ok(cli("keys", "rotate", "--actor", "ops", "-f", spec))
    assert "master key rotated" in out and "data keys re-wrapped" in out
    assert (keys / "master.key").read_bytes() != old and len(list((keys / "retired").iterdir())) == 1
    _ok(cli("verify", spec))
    _ok(cli("models", "verify", f"{NAME}/2", "-f", spec))
    records = json.loads(_ok(cli("audit", "--verify", "--json", "-f", spec)))["records"]
    assert records[-1]["event"] == "key_rotation" and records[-1]["actor"] == "ops"
    assert old.strip().decode() not in json.dumps(records)


def test_traversal_names_are_rejected(project: Path) -> None:
    spec = str(project)
    commands = [("models", "show", "{}"), ("models", "verify", "{}"), ("models", "history", "{}"),
                ("lineage", "{}"), ("models", "promote", "{}", "1", "--reason", "x"),
                ("models", "export", "{}", "-o", str(project.parent / "out.keel")),
                ("models", "promote", NAME, "1", "--to", "{}", "--reason", "x"),
                ("models", "rollback", NAME, "--alias", "{}"), ("models", "rollback", NAME, "--to", "{}")]
    names = ["../x", "..%2f", "%2e%2e/", "/etc/passwd", "file:///etc/passwd", "..\\x", "a\\b", "x" * 70]
    for i, command in enumerate(commands):
        for name in names[i % 3::3]:
            _fails(cli(*(part.format(name) for part in command), "-f", spec), 2, "expected:")
    assert not (project.parent / "out.keel").exists()
    assert json.loads(_ok(cli("models", "history", NAME, "--json", "-f", spec)))["history"] == []


def test_hostile_import_archives_never_read_outside_the_store(project: Path, tmp_path: Path) -> None:
    spec = str(project)
    canary = tmp_path / "canary-fifo"
    os.mkfifo(canary)  # any attempt to read it would block the command until the timeout
    for entry_name, kind, fragment in (("components/model", tarfile.SYMTYPE, "symbolic link"),
                                       ("components/model", tarfile.LNKTYPE, "hard link"),
                                       ("../canary-fifo", tarfile.REGTYPE, "'..'"),
                                       (str(canary), tarfile.REGTYPE, "absolute path")):
        archive = tmp_path / "evil.keel"
        with tarfile.open(archive, "w") as tar:
            info = tarfile.TarInfo(entry_name)
            info.type, info.linkname = kind, str(canary)
            tar.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
        # A real process with a timeout for the link to the FIFO: following it would block, not fail.
        run = keel if kind == tarfile.SYMTYPE else cli
        _fails(run("models", "import", str(archive), "-f", spec), 3, fragment)
    _fails(keel("models", "import", str(canary), "-f", spec, timeout=120), 2, "not a regular file")
    assert canary.exists() and not (tmp_path / "components").exists()
