"""User-facing errors: each says what was wrong, what was expected and how to fix it."""

from __future__ import annotations


class KeelError(Exception):
    """An error caused by the user's input; the CLI prints it without a traceback."""

    exit_code = 2

    def __init__(self, what: str, *, expected: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.expected = expected
        self.fix = fix
        super().__init__(self.render())

    def render(self) -> str:
        lines = [self.what]
        if self.expected:
            lines.append(f"  expected: {self.expected}")
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)


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
