"""The `store:` section of pipeline.yaml and the `executor:` address: where artifacts, metadata and work go."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, StrictFloat, StrictInt, field_validator, model_validator

from keelml.spec.base import StrictModel, url_has_password

_SECRET_OPTION = re.compile(r"secret|password|passwd|token|credential|private|connection_string|(^|_)sas($|_)|"
                            r"(^|_)key($|_)", re.IGNORECASE)
EXECUTOR_PATTERN = r"^(local|dask://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5})$"
"""`executor:`: keelml.engine.executors.DASK_URL accepts the same addresses."""


class StoreSpec(StrictModel):
    """Where artifacts and metadata live; paths are relative to the spec file."""

    path: str = Field(".keel", description="local directory: keys, the default SQLite metadata and artifacts")
    metadata_url: str | None = Field(None, description="any SQLAlchemy URL; default: SQLite in `path`")
    artifacts_url: str | None = Field(
        None, description="artifacts on a shared directory or any fsspec URL (s3://, gs://...); default: `path`/store")
    artifacts_options: dict[str, StrictInt | StrictFloat | bool | str] = Field(
        default_factory=dict, description="fsspec storage options (endpoint_url, region...); never credentials")
    encryption: bool = True

    @model_validator(mode="after")
    def _no_password_in_url(self) -> StoreSpec:  # after the fields: the message must not echo the URL
        if self.artifacts_url is not None and url_has_password(self.artifacts_url):
            raise ValueError("store.artifacts_url holds a password; keep credentials out of the spec: drop "
                             "user:password@ from the URL and set them in the environment (e.g. AWS_ACCESS_KEY_ID "
                             "and AWS_SECRET_ACCESS_KEY for s3://)")
        return self

    @field_validator("artifacts_options")
    @classmethod
    def _no_credentials(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if _SECRET_OPTION.search(key):
                raise ValueError(f"store.artifacts_options must not hold credentials ({key!r}); set them in the "
                                 "environment instead (e.g. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for s3://)")
        return value
