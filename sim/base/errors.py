"""Errors that acsim reports to a user as one clear message (exit code 2, no traceback).

Positions in files mean the same thing in every message: ``row N`` is the N-th data row of a
table (1-based, a CSV header line is not counted; the same row index pandas and parquet give,
plus one), ``line N`` is the N-th line of a text file (YAML files, prompt lists).
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable


class AcsimError(Exception):
    """Base class of every error that is the user's input, not a bug in acsim."""

    exit_code = 2

    def __reduce__(self) -> tuple[object, ...]:
        # Rebuilt from its message and fields, not by calling __init__ again (whose arguments
        # differ per class): an error raised in a worker process reaches the parent intact.
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(cls: type[AcsimError], args: tuple[object, ...], state: dict[str, object]) -> AcsimError:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class ConfigError(AcsimError):
    """An experiment file or --set override is invalid.

    The message names the dotted field path, the bad value and what is allowed.
    """

    def __init__(self, field: str, value: object, allowed: str, hint: str = "") -> None:
        self.field, self.value, self.allowed, self.hint = field, value, allowed, hint
        msg = f"{field}: {value!r} is not valid; {allowed}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)

    @classmethod
    def missing(cls, field: str, expected: str) -> ConfigError:
        """A required field that is not there."""
        err = cls(field, None, expected)
        err.args = (f"{field}: missing; {expected}",)
        return err


class InputError(AcsimError):
    """A data file (trace, prompt list, profile, pairs) is missing or malformed.

    The message names the file and, when known, the data row (or the line of a text file) and
    the column.
    """

    def __init__(
        self,
        path: object,
        problem: str,
        *,
        row: int | None = None,
        column: str | None = None,
        line: int | None = None,
    ) -> None:
        self.path, self.row, self.column, self.line = str(path), row, column, line
        self.problem = problem
        where = self.path
        if line is not None:
            where += f", line {line}"
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {problem}")


class OutputError(AcsimError):
    """acsim refuses to write where it was asked to (the path is not its own, or is in use).

    Nothing has been written or deleted when it is raised.
    """

    def __init__(self, path: object, problem: str) -> None:
        self.path, self.problem = str(path), problem
        super().__init__(f"{self.path}: {problem}")


class OutputBusy(OutputError):
    """Another acsim process is writing the same output directory."""


class DeprecatedField(UserWarning):
    """An old experiment-file key that still works and was read at its new place."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new
        super().__init__(f"`{old}:` is deprecated and was read as `{new}:`; write it there")


def did_you_mean(value: object, allowed: Iterable[object]) -> str:
    """A hint naming the allowed value closest to ``value`` (empty when none is close)."""
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
    return f"did you mean {close[0]!r}?" if close else ""


def unknown_name(field: str, value: object, allowed: Iterable[object], name: object = None) -> ConfigError:
    """The error for a name that is not in a registry: the field, the value, every allowed name
    (in the registry's order) and the one closest to ``name`` (default: the value). Every
    registry lookup raises this one."""
    names = [str(a) for a in allowed]
    return ConfigError(field, value, "allowed: " + ", ".join(names), did_you_mean(value if name is None else name, names))
