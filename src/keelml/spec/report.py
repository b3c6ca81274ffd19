"""The `report:` section of pipeline.yaml: what the plaintext run report (and its contract.yaml) may show.

The report sits beside the store, unencrypted, for people to read; what it may print of the data is
set here, and docs/spec.md explains it.
"""

from __future__ import annotations

from pydantic import Field

from keelml.spec.base import StrictModel

DEFAULT_MIN_CATEGORY_COUNT = 5


class ReportSpec(StrictModel):
    """The run report: a category value is printed only when training held it often enough."""

    min_category_count: int = Field(
        DEFAULT_MIN_CATEGORY_COUNT, ge=0,
        description="a feature's category seen fewer times than this in the training data is withheld from the "
                    "report and its contract.yaml (the contract in the encrypted store keeps it); 0 shows every one")
