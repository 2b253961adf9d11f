"""Errors of the analytics stage: queries, named analyses and their parameters, reports."""

from __future__ import annotations

from pulsecast.errors import PulsecastError

__all__ = [
    "AnalysisNotFoundError",
    "MissingTableError",
    "ParamError",
    "QueryError",
    "ReportError",
]


class QueryError(PulsecastError):
    """A query failed (syntax, unknown table or column...)."""


def _creator(table: str) -> str:
    if table.endswith("_scores"):
        return "live scoring in `pulsecast stream run` creates it (ml.detector.enabled)"
    return "`pulsecast stream run` creates it"


class MissingTableError(QueryError):
    """A query reads a lake table that does not exist yet.

    Attributes:
        table: The table's SQL name.
    """

    def __init__(self, table: str) -> None:
        super().__init__(f"table {table} does not exist yet: {_creator(table)}")
        self.table = table


class AnalysisNotFoundError(QueryError):
    """No named analysis has that name.

    Attributes:
        name: The name asked for.
        known: The names there are.
    """

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no analysis named {name!r}; analyses: {', '.join(known)}")
        self.name = name
        self.known = known


class ParamError(QueryError):
    """A parameter of a named analysis is unknown or its value does not fit its type.

    Attributes:
        analysis: The analysis's name.
        param: The parameter's name.
    """

    def __init__(self, message: str, *, analysis: str, param: str) -> None:
        super().__init__(message)
        self.analysis = analysis
        self.param = param


class ReportError(PulsecastError):
    """A report could not be written (its folder, or the PNG renderer)."""
