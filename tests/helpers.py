"""Helpers for end-to-end tests: a small Adult project in a temp dir, and running `keel`."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ADULT = ROOT / "examples" / "adult"


def without_tuning(spec_text: str) -> str:
    """The Adult example's spec without its tune section and with one process (tests stay fast)."""
    text = re.sub(r"\ntune:\n(?:  .*\n|\n)*", "\n", spec_text)
    return re.sub(r"\n  n_jobs: 2 .*\n", "\n", text, count=1)


def small_adult_project(directory: Path, *, train_rows: int = 6000, test_rows: int = 3000,
                        cv_folds: int = 3, bootstrap_rounds: int = 50, extra: str = "") -> Path:
    """Copy the head of the real Adult files and the example spec (3 folds) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    train = (ADULT / "adult.data").read_text().splitlines()[:train_rows]
    test = (ADULT / "adult.test").read_text().splitlines()[: test_rows + 1]
    (directory / "adult.data").write_text("\n".join(train) + "\n")
    (directory / "adult.test").write_text("\n".join(test) + "\n")
    spec = without_tuning((ADULT / "pipeline.yaml").read_text())
    spec = spec.replace("cv_folds: 5", f"cv_folds: {cv_folds}").replace("min_score: 0.85", "min_score: 0.80")
    path = directory / "pipeline.yaml"
    path.write_text(spec + f"\nevaluate:\n  bootstrap_rounds: {bootstrap_rounds}\n" + extra)
    return path


def keel(*args: str, cwd: Path | None = None, timeout: float = 600,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**(os.environ if env is None else env), "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "keelml", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env, check=False)


def keel_here(*args: str) -> subprocess.CompletedProcess[str]:
    """`keel ARGS` in this process through the real entry point; exit code and both streams captured."""
    import contextlib
    import io

    from keelml.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code
    return subprocess.CompletedProcess(["keel", *args], int(code or 0), out.getvalue(), err.getvalue())


def json_request(conn: http.client.HTTPConnection, method: str, path: str, body: Any = None, *,
                 key: str | None = None, headers: dict[str, str] | None = None,
                 raw: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
    """One request on `conn` (then closed): (status, parsed JSON or the raw bytes, lower-cased headers)."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    if key:
        sent["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    conn.request(method, path, body=data, headers=sent)
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    try:
        parsed: Any = json.loads(payload)
    except ValueError:
        parsed = payload
    return response.status, parsed, {k.lower(): v for k, v in response.getheaders()}
