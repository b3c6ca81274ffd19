"""Security tests run single-threaded, like the steps do."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="session")
def _single_thread() -> Iterator[None]:
    """OpenMP threads crawl on a busy shared CPU; the audits run single-threaded like the steps do."""
    import sklearn.ensemble  # noqa: F401  (loads the OpenMP runtime, so that the limit applies to it)

    with threadpool_limits(limits=1):
        yield


from tests.serve.conftest import api_key, store  # noqa: E402,F401  (the served Adult store, reused)
