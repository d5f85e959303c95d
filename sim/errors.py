"""Errors that acsim reports to a user as one clear message (exit code 2, no traceback)."""

from __future__ import annotations


class AcsimError(Exception):
    """Base class of every error that is the user's input, not a bug in acsim."""

    exit_code = 2


class ConfigError(AcsimError):
    """An experiment file or --set override is invalid.

    The message names the dotted field path, the bad value and what is allowed.
    """

    def __init__(self, field: str, value: object, allowed: str, hint: str = "") -> None:
        self.field, self.value, self.allowed = field, value, allowed
        msg = f"{field}: {value!r} is not valid; {allowed}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class InputError(AcsimError):
    """A data file (trace, prompt list, profile, pairs) is missing or malformed.

    The message names the file and, when known, the row and column.
    """

    def __init__(self, path: object, problem: str, *, row: int | None = None, column: str | None = None) -> None:
        self.path, self.row, self.column, self.problem = str(path), row, column, problem
        where = self.path
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {problem}")
