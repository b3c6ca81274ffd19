"""What every spec section shares: strict, immutable pydantic models, the name pattern, and the spec file
that relative paths resolve against."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class StrictModel(BaseModel):
    """A spec section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def url_has_password(url: str) -> bool:
    """True when a database URL carries a password (user:password@ or a password query parameter)."""
    try:
        parts = urlsplit(url)
        secret_in_query = any(key.lower() in ("password", "passwd", "pwd") for key, _ in parse_qsl(parts.query))
        return bool(parts.password) or secret_in_query
    except ValueError:
        return "@" in url and ":" in url.split("@", 1)[0].split("://", 1)[-1]


@dataclass(frozen=True)
class SpecFile:
    """The spec file a section came from: its path (relative paths resolve against its directory) and digest."""

    path: Path
    digest: str

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, path: str) -> str:
        """An absolute path for a spec-relative local path; URLs (s3://...) unchanged."""
        if "://" in path:
            return path
        candidate = Path(path).expanduser()
        return str(candidate if candidate.is_absolute() else (self.base_dir / candidate).resolve())
