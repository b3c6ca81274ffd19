"""keelml never loads pickles, never uses yaml.load, never runs a shell: a scan of the source."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "keelml"
FORBIDDEN_CALLS = {("pickle", "load"), ("pickle", "loads"), ("joblib", "load"), ("cloudpickle", "load"),
                   ("cloudpickle", "loads"), ("yaml", "load"), ("os", "system"), ("dill", "load"),
                   ("dill", "loads"), ("pd", "read_pickle"), ("pandas", "read_pickle"), ("np", "load")}


def test_source_has_no_unsafe_calls() -> None:
    found = []
    files = list(SRC.rglob("*.py"))
    assert len(files) > 20
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
                if isinstance(owner, ast.Name) and (owner.id, node.func.attr) in FORBIDDEN_CALLS:
                    found.append(f"{path.relative_to(SRC)}:{node.lineno} {owner.id}.{node.func.attr}")
                if any(k.arg == "shell" and isinstance(k.value, ast.Constant) and k.value.value is True
                       for k in node.keywords):
                    found.append(f"{path.relative_to(SRC)}:{node.lineno} shell=True")
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names]
                module = getattr(node, "module", None) or ""
                if "pickle" in names or module == "pickle" or "cloudpickle" in names or "dill" in names:
                    found.append(f"{path.relative_to(SRC)}:{node.lineno} imports a pickle module")
    assert found == []


def test_the_scan_would_catch_a_pickle_load(tmp_path: Path) -> None:
    tree = ast.parse("import pickle\npickle.loads(b'')\n")
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    assert (calls[0].func.value.id, calls[0].func.attr) in FORBIDDEN_CALLS  # type: ignore[union-attr]
