"""The `store:` keys for shared state: artifacts_url, artifacts_options, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.shared.conftest import small_project

from keelml.errors import SpecError
from keelml.registry.project import artifacts_location, open_project
from keelml.spec.pipeline import load_spec


def test_artifacts_url_is_resolved_against_the_spec_and_urls_kept(tmp_path: Path) -> None:
    spec = small_project(tmp_path, store="  artifacts_url: ../shared\n")
    assert artifacts_location(load_spec(spec)) == str((tmp_path.parent / "shared").resolve())
    spec = small_project(tmp_path, store="  artifacts_url: s3://bucket/team\n  artifacts_options: {region: eu}\n")
    loaded = load_spec(spec)
    assert artifacts_location(loaded) == "s3://bucket/team" and loaded.spec.store.artifacts_options == {"region": "eu"}


@pytest.mark.parametrize("option", ["secret", "key", "aws_secret_access_key", "token", "password",
                                    "connection_string", "sas_token"])
def test_credentials_in_artifacts_options_are_refused(tmp_path: Path, option: str) -> None:
    spec = small_project(tmp_path, store=f"  artifacts_url: s3://bucket/team\n  artifacts_options: {{{option}: x}}\n")
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    assert "must not hold credentials" in str(caught.value.what) and "AWS_SECRET_ACCESS_KEY" in str(caught.value.what)


def test_a_password_in_artifacts_url_is_refused(tmp_path: Path) -> None:
    spec = small_project(tmp_path, store="  artifacts_url: ftp://bob:hunter2@files.example/keel\n")
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    assert "holds a password" in str(caught.value.what) and "hunter2" not in str(caught.value)


def test_a_url_as_store_path_points_at_artifacts_url(tmp_path: Path) -> None:
    spec = small_project(tmp_path, store="  path: s3://bucket/keel\n")
    with pytest.raises(SpecError) as caught:
        open_project(load_spec(spec))
    assert "store.artifacts_url" in caught.value.fix


def test_an_unknown_filesystem_is_a_spec_error(tmp_path: Path) -> None:
    spec = small_project(tmp_path, store="  artifacts_url: nosuchfs://bucket/keel\n")
    with pytest.raises(SpecError) as caught:
        open_project(load_spec(spec))
    assert "cannot open store.artifacts_url nosuchfs://bucket/keel" in caught.value.what


def test_key_rotation_is_refused_on_a_shared_artifact_store(tmp_path: Path) -> None:
    from tests.helpers import keel_here

    from keelml.store.keys import create_keys

    create_keys(tmp_path / ".keel" / "keys")
    spec = small_project(tmp_path, store=f"  path: .keel\n  artifacts_url: {tmp_path / 'shared'}\n")
    result = keel_here("keys", "rotate", "-f", str(spec))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "shared at" in result.stderr and "store.artifacts_url" in result.stderr
    assert not (tmp_path / ".keel" / "keys" / "master.key.next").exists()
