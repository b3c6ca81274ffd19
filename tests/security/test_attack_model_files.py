"""Model files built to exhaust memory or to dodge the type audit, refused before anything is inflated or
built: a compression bomb (honest or understated headers) costs kilobytes, not what it inflates to; a
model component stored under another codec than `model` is refused at import, registration and
verification. Through `keel models import` with archives signed by a trusted partner, and the registry."""

from __future__ import annotations

import io
import json
import os
import pickle
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.helpers import keel_here
from tests.registry.conftest import tiny_model_bytes
from tests.security.conftest import Importer
from tests.security.crafted import SCHEMA, json_parts, partner_archive, schema_bomb, understated_bomb, zip_file

from keelml.errors import IntegrityError
from keelml.model.persist import audit_model, load_model
from keelml.registry import build_bundle

BOMB = 64 << 20  # what each bomb inflates to: 64 MiB from a 64 KiB file


def _peak(action: Callable[[], Any]) -> tuple[BaseException | None, int]:
    """(what `action` raised, the most memory Python allocated while it ran)."""
    import skops.io  # noqa: F401  (imported first: the import's own allocations are not the audit's)

    tracemalloc.start()
    try:
        action()
        raised = None
    except BaseException as exc:  # returned to the test, which asserts on it
        raised = exc
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return raised, peak


def test_a_compression_bomb_is_refused_from_its_central_directory() -> None:
    bomb = schema_bomb(BOMB)
    assert len(bomb) < BOMB // 500
    raised, peak = _peak(lambda: audit_model(bomb))
    assert peak < 2 << 20, f"{peak / 2**20:.1f} MiB"  # without the bound: over 128 MiB (the bytes, then the text)
    assert isinstance(raised, IntegrityError), raised
    assert f"declares {BOMB} bytes uncompressed" in raised.what and "nothing was decompressed" in raised.what


def test_an_entry_that_inflates_beyond_its_declared_size_is_refused_while_inflating() -> None:
    bomb = understated_bomb(BOMB)  # headers say 4 KiB, with the CRC of those 4 KiB: zipfile would inflate it all
    with zipfile.ZipFile(io.BytesIO(bomb)) as archive:
        assert archive.getinfo("schema.json").file_size == 4096 and archive.testzip() is None
    raised, peak = _peak(lambda: audit_model(bomb))
    assert peak < 2 << 20, f"{peak / 2**20:.1f} MiB"  # without the check: over 128 MiB
    assert isinstance(raised, IntegrityError), raised
    assert "inflates beyond the 4096 bytes it declares" in raised.what


@pytest.mark.parametrize(("entries", "problem"), [
    ([("schema.json", SCHEMA, 12, len(SCHEMA), 0)], "compression method 12"),  # bzip2: unbounded ratio
    ([("schema.json", SCHEMA, 14, len(SCHEMA), 0)], "compression method 14"),  # lzma
    ([("schema.json", SCHEMA, 0, 1 << 30, 0)], f"declares {1 << 30} bytes but stores {len(SCHEMA)}"),
])
def test_other_methods_and_inconsistent_stored_sizes_are_refused(entries: list[tuple[str, bytes, int, int, int]],
                                                                 problem: str) -> None:
    with pytest.raises(IntegrityError, match=problem):
        audit_model(zip_file(entries))


def test_real_model_files_pass_the_bounds() -> None:
    import numpy as np
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    assert load_model(tiny_model_bytes()).predict([[3.0]])[0] == 1  # what keelml writes: stored entries
    model = LogisticRegression().fit(np.arange(8.0).reshape(-1, 1), [0] * 4 + [1] * 4)
    deflated = sio.dumps(model, compression=zipfile.ZIP_DEFLATED)  # another skops writer's choice
    assert load_model(deflated).predict([[7.0]])[0] == 1


def test_a_model_too_large_to_load_back_is_refused_when_it_is_saved(monkeypatch: pytest.MonkeyPatch) -> None:
    from keelml.errors import DataError
    from keelml.model import persist

    data = tiny_model_bytes()
    persist.check_loadable(data)
    monkeypatch.setattr(persist, "MAX_MODEL_BYTES", 1000)  # as if the model were over 1 GiB
    with pytest.raises(DataError, match="too large for keelml to load back"):
        persist.check_loadable(data)


# through `keel models import` -----------------------------------------------------------------------------

def _refused_import(importer: Importer, archive: Path, *fragments: str) -> None:
    result = keel_here("models", "import", str(archive), "-f", str(importer.spec))
    assert result.returncode == 3, (result.stdout, result.stderr)
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and "expected:" in result.stderr and "fix:" in result.stderr
    [failure] = [r for r in importer.events() if r["event"] == "verification_failure"]
    assert failure["details"]["archive"] == str(archive) and fragments[0] in failure["details"]["problem"]
    with importer.open() as project:
        assert project.registry.models() == []


def test_a_bomb_in_a_trusted_partners_archive_exits_3_with_an_audit_record(importer: Importer,
                                                                          tmp_path: Path) -> None:
    archive = partner_archive(tmp_path / "bomb.keel", importer.partner,
                              {"model": (schema_bomb(BOMB), "model"), **json_parts()})
    _refused_import(importer, archive, "(a compression bomb?)", "file 'components/model'")
    understated = partner_archive(tmp_path / "understated.keel", importer.partner,
                                  {"model": (understated_bomb(BOMB), "model"), **json_parts()})
    result = keel_here("models", "import", str(understated), "-f", str(importer.spec))
    assert result.returncode == 3 and "inflates beyond the 4096 bytes it declares" in result.stderr


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("codec", ["bytes", "json", "table"])
def test_a_model_under_another_codec_is_refused_at_import(importer: Importer, tmp_path: Path, codec: str) -> None:
    marker = tmp_path / "pwned"
    archive = partner_archive(tmp_path / "codec.keel", importer.partner,
                              {"model": (pickle.dumps(_Payload(marker)), codec), **json_parts()})
    _refused_import(importer, archive, f"component 'model' has codec {codec!r}", "'manifest.json': malformed manifest")
    assert not marker.exists()


def test_another_component_under_the_model_codec_is_refused_at_import(importer: Importer, tmp_path: Path) -> None:
    archive = partner_archive(tmp_path / "extra.keel", importer.partner,
                              {"model": (tiny_model_bytes(), "model"), "extra": (tiny_model_bytes(), "model"),
                               **json_parts()})
    result = keel_here("models", "import", str(archive), "-f", str(importer.spec))
    assert result.returncode == 3 and "component 'extra' has codec 'model'" in result.stderr


def test_a_model_under_another_codec_is_refused_at_registration_and_verification(importer: Importer,
                                                                                 tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with importer.open() as project:  # this project's own key signs it: only the codec is wrong
        parts = {"model": (pickle.dumps(_Payload(marker)), "bytes"), **json_parts()}
        ids = {part: project.artifacts.put(data, codec=codec) for part, (data, codec) in parts.items()}
        bundle = build_bundle(name="m", components=ids, codecs={p: c for p, (_, c) in parts.items()}, info={},
                              keys=project.keys)
        bundle_id = project.artifacts.put(json.dumps(bundle).encode(), codec="json")
        with pytest.raises(IntegrityError, match="component 'model' has codec 'bytes'"):
            project.registry.register("m", bundle_id, run_id="r", summary={})
        # written into the registry behind its back: verification refuses it
        project.registry.repository.add_version("m", bundle_id, run_id="r", summary={}, facts={}, status="staging",
                                                reasons=[], actor=None)
    spec = str(importer.spec)
    for command in (("models", "verify", "m/1"), ("models", "show", "m/1"), ("verify", spec)):
        result = keel_here(*command, *(("-f", spec) if command[0] == "models" else ()))
        assert result.returncode == 3, (command, result.stdout, result.stderr)
        assert "component 'model' has codec 'bytes'" in result.stderr
    assert not marker.exists()
    assert len([r for r in importer.events() if r["event"] == "verification_failure"]) >= 3
