"""User-facing errors: each says what was wrong, what was expected and how to fix it."""

from __future__ import annotations

from typing import Any


class KeelError(Exception):
    """An error caused by the user's input; the CLI prints it without a traceback."""

    exit_code = 2

    def __init__(self, what: str, *, expected: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.expected = expected
        self.fix = fix
        super().__init__(self.render())

    def __reduce__(self) -> tuple[Any, ...]:
        """Rebuilt with its parts when it comes back from a worker process (the CLI prints it whole)."""
        return (_rebuild, (type(self), self.what, self.expected, self.fix))

    def render(self) -> str:
        lines = [self.what]
        if self.expected:
            lines.append(f"  expected: {self.expected}")
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)


def _rebuild(cls: type[KeelError], what: str, expected: str | None, fix: str | None) -> KeelError:
    return cls(what, expected=expected, fix=fix)


class SpecError(KeelError):
    """The pipeline spec is invalid."""


class DataError(KeelError):
    """The data does not fit what the spec or contract expects."""


class KeyMaterialError(KeelError):
    """Keys are missing, unreadable or too widely readable."""


class IntegrityError(KeelError):
    """Stored bytes failed their digest or signature check: tampering or corruption."""

    exit_code = 3


class InputError(KeelError):
    """A name, version, alias or path given as input is malformed or unsafe (e.g. `../x`, `file://`)."""


class NotFoundError(KeelError):
    """A run, model or artifact that was asked for does not exist."""
