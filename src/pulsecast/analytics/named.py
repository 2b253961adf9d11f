"""Named analyses: SQL files shipped in the package, run with typed parameters on either engine.

Each analysis is one file, ``queries/<name>.sql``, whose leading comment says
what it answers and which parameters it takes::

    -- Readings and mean of each metric per entity and hour.
    -- (more lines of description)
    --
    -- param: stream: stream = telemetry -- the stream
    -- param: since: timestamp = 7d -- first hour
    SELECT ... FROM gold_{stream}_{window} WHERE window_start >= {since} ...

The first line is the summary ``pulsecast sql --list`` prints. A parameter line
is ``-- param: NAME: TYPE = DEFAULT -- HELP`` (an empty default is allowed). In
the body, ``{NAME}`` is replaced by the parameter's value as a SQL literal
(types below), and ``{@OTHER}`` by the body of analysis ``OTHER`` rendered with
the same values, to be used as a subquery (without its final ``ORDER BY``,
which means nothing there and costs a sort). The text is the common subset of
DuckDB's and Spark's dialects plus the portable functions of
:data:`pulsecast.analytics.sql.PORTABLE_FUNCTIONS`, so the same file runs on
both engines.

Parameter types, and what a value becomes in the SQL:

- ``stream``: a configured stream's name, as a bare name (``silver_{stream}``);
- ``window``: a tumbling window of ``stream.windows`` (``1m``), as a bare name;
- ``timestamp``: an ISO date or time (UTC unless it carries an offset), an age
  before now (``30m``, ``24h``, ``7d``, ``2w``), ``now``, ``min`` (1970) or
  ``max`` (no upper bound); becomes ``TIMESTAMP '...'`` in UTC;
- ``int``, ``float``: a number literal;
- ``str``: a string literal; quotes, backslashes and control characters are
  refused (the two engines escape them differently).

:func:`run_analysis` is the entry point for programs (the dashboard): it takes
values as strings or as Python values and returns a
:class:`~pulsecast.analytics.sql.QueryResult` (``.table`` is Arrow).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from importlib import resources

from pulsecast.analytics.errors import AnalysisNotFoundError, ParamError
from pulsecast.analytics.sql import Engine, QueryResult, SqlEngine, open_engine
from pulsecast.config import Settings

__all__ = [
    "PARAM_TYPES",
    "TIMESTAMP_MAX",
    "TIMESTAMP_MIN",
    "Analysis",
    "Param",
    "analyses",
    "bind",
    "get_analysis",
    "parse_analysis",
    "render",
    "run_analysis",
]

#: The types a parameter can have, with what a value looks like.
PARAM_TYPES: dict[str, str] = {
    "stream": "a configured stream",
    "window": "a tumbling window of stream.windows",
    "timestamp": "ISO date/time (UTC), an age (30m, 24h, 7d, 2w), now, min or max",
    "int": "an integer",
    "float": "a number",
    "str": "text without quotes or backslashes",
}

#: What ``min`` and ``max`` mean for a timestamp (``max``: far enough to mean "no bound",
#: near enough that adding a day stays within both engines' range).
TIMESTAMP_MIN = datetime(1970, 1, 1, tzinfo=UTC)
TIMESTAMP_MAX = datetime(9000, 1, 1, tzinfo=UTC)

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_PARAM = re.compile(r"^--\s*param:\s*(\w+)\s*:\s*(\w+)\s*=\s*(.*?)\s*(?:--\s*(.*?)\s*)?$")
_PLACEHOLDER = re.compile(r"\{(@?)(\w+)\}")
#: A query's final ORDER BY clause (with no LIMIT after it).
_FINAL_ORDER = re.compile(r"\n\s*ORDER BY [^\n()]*\s*$", re.IGNORECASE)
_AGE = re.compile(r"^(\d+)\s*([smhdw])$")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_BAD_TEXT = re.compile(r"['\\\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Param:
    """One parameter of a named analysis.

    Attributes:
        name: Its name (``--param NAME=VALUE``).
        type: One of :data:`PARAM_TYPES`.
        default: The default, as text (parsed like a value given on the command line).
        help: What it does.
    """

    name: str
    type: str
    default: str
    help: str


@dataclass(frozen=True)
class Analysis:
    """A named analysis.

    Attributes:
        name: Its name (the file's, without ``.sql``).
        summary: One line: what it answers.
        description: The whole description (paragraphs separated by blank lines).
        params: Its parameters, in the file's order.
        body: The SQL with its placeholders.
    """

    name: str
    summary: str
    description: str
    params: tuple[Param, ...]
    body: str

    def param(self, name: str) -> Param:
        """The parameter called ``name``.

        Raises:
            ParamError: There is none.
        """
        for p in self.params:
            if p.name == name:
                return p
        names = ", ".join(p.name for p in self.params) or "none"
        msg = f"analysis {self.name} has no param {name!r}; its params: {names}"
        raise ParamError(msg, analysis=self.name, param=name)


def parse_analysis(name: str, text: str) -> Analysis:
    """An analysis from its file's text.

    Raises:
        ValueError: The header or the placeholders are malformed.
    """
    lines = text.splitlines()
    header: list[str] = []
    while lines and lines[0].startswith("--"):
        header.append(lines.pop(0).rstrip())
    params: list[Param] = []
    description: list[str] = []
    for line in header:
        if re.match(r"^--\s*param:", line):
            match = _PARAM.match(line)
            if match is None:
                msg = f"{name}.sql: malformed param line {line!r}"
                raise ValueError(msg)
            pname, ptype, default, help_ = match.groups()
            if ptype not in PARAM_TYPES:
                msg = f"{name}.sql: param {pname} has unknown type {ptype!r}"
                raise ValueError(msg)
            params.append(Param(pname, ptype, default, help_ or ""))
        else:
            description.append(line[2:].strip())
    paragraphs = "\n".join(description).strip().split("\n\n")
    full = "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())
    if not full:
        msg = f"{name}.sql: no description in its leading comment"
        raise ValueError(msg)
    body = "\n".join(lines).strip().rstrip(";")
    declared = {p.name for p in params}
    used = {m.group(2) for m in _PLACEHOLDER.finditer(body) if not m.group(1)}
    if used - declared:
        msg = f"{name}.sql: placeholders without a param line: {sorted(used - declared)}"
        raise ValueError(msg)
    return Analysis(name, full.split("\n")[0].split(". ")[0].rstrip("."), full, tuple(params), body)


@cache
def analyses() -> dict[str, Analysis]:
    """Every named analysis shipped in the package, by name."""
    found: dict[str, Analysis] = {}
    folder = resources.files("pulsecast.analytics") / "queries"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".sql") and _NAME.match(entry.name[:-4]):
            name = entry.name[:-4]
            found[name] = parse_analysis(name, entry.read_text(encoding="utf-8"))
    return found


def get_analysis(name: str) -> Analysis:
    """The analysis called ``name``.

    Raises:
        AnalysisNotFoundError: There is none.
    """
    known = analyses()
    if name not in known:
        raise AnalysisNotFoundError(name, sorted(known))
    return known[name]


# -- values ------------------------------------------------------------------------------------


def _timestamp(raw: object, now: datetime) -> datetime | None:
    if isinstance(raw, datetime):
        moment = raw
    elif isinstance(raw, date):
        moment = datetime(raw.year, raw.month, raw.day)
    elif isinstance(raw, str):
        text = raw.strip().lower()
        named = {"now": now, "min": TIMESTAMP_MIN, "max": TIMESTAMP_MAX}
        if text in named:
            return named[text]
        age = _AGE.match(text)
        if age:
            return now - timedelta(**{_AGE_UNITS[age.group(2)]: int(age.group(1))})
        try:
            moment = datetime.fromisoformat(raw.strip())
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


_TIMESTAMP_FORMS = (
    "an ISO date or time (2026-05-01, 2026-05-01T12:00Z), an age before now "
    "(30m, 24h, 7d, 2w), now, min or max"
)


def _number(raw: object, kind: type[int] | type[float]) -> int | float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    if kind is int and isinstance(raw, float):
        return None
    try:
        number = kind(raw)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _parse(kind: str, raw: object, settings: Settings, now: datetime) -> tuple[object, str]:
    """``(value, "")`` when ``raw`` fits type ``kind``, else ``(None, what was expected)``."""
    if kind == "stream":
        ok = isinstance(raw, str) and raw in settings.streams
        return raw, "" if ok else f"a configured stream ({', '.join(sorted(settings.streams))})"
    if kind == "window":
        tumbling = [w.name for w in settings.stream.windows if w.slide_s in (None, w.size_s)]
        ok = isinstance(raw, str) and raw in tumbling and re.match(r"^\w+$", raw) is not None
        return raw, "" if ok else f"a tumbling window of stream.windows ({', '.join(tumbling)})"
    if kind == "timestamp":
        moment = _timestamp(raw, now)
        return moment, "" if moment is not None else _TIMESTAMP_FORMS
    if kind in ("int", "float"):
        number = _number(raw, int if kind == "int" else float)
        expected = "an integer" if kind == "int" else "a finite number"
        return number, "" if number is not None else expected
    ok = isinstance(raw, str) and not _BAD_TEXT.search(raw)
    return raw, "" if ok else "text without quotes, backslashes or control characters"


def _value(
    analysis: Analysis, param: Param, raw: object, settings: Settings, now: datetime
) -> object:
    """``raw`` (text or a Python value) checked against ``param``'s type."""
    value, expected = _parse(param.type, raw, settings, now)
    if expected:
        msg = f"param {param.name} of {analysis.name}: expected {expected}, got {raw!r}"
        raise ParamError(msg, analysis=analysis.name, param=param.name)
    return value


def bind(
    analysis: Analysis,
    settings: Settings,
    values: Mapping[str, object] | None = None,
    *,
    now: datetime | None = None,
) -> dict[str, object]:
    """Every parameter's value: ``values`` checked and typed, defaults for the others.

    Args:
        analysis: The analysis.
        settings: Which streams and windows exist.
        values: Values by parameter name, as text or Python values.
        now: What ``now`` and ages are relative to (default: the clock, UTC).

    Raises:
        ParamError: An unknown parameter, or a value that does not fit its type.
    """
    moment = now or datetime.now(UTC)
    given = dict(values or {})
    for name in given:
        analysis.param(name)  # raises for an unknown one
    return {
        p.name: _value(analysis, p, given.get(p.name, p.default), settings, moment)
        for p in analysis.params
    }


def _literal(param: Param, value: object) -> str:
    if param.type in ("stream", "window", "int"):
        return str(value)
    if param.type == "float":
        return repr(float(value))  # type: ignore[arg-type]
    if param.type == "timestamp":
        assert isinstance(value, datetime)  # noqa: S101 (bind made it one)
        return f"TIMESTAMP '{value:%Y-%m-%d %H:%M:%S.%f}'"
    return f"'{value}'"


def render(
    analysis: Analysis,
    settings: Settings,
    values: Mapping[str, object] | None = None,
    *,
    now: datetime | None = None,
) -> str:
    """The analysis's SQL with its parameters' values in place (see :func:`bind`).

    Raises:
        ParamError: An unknown parameter, or a value that does not fit its type.
    """
    bound = bind(analysis, settings, values, now=now)
    return _fill(analysis, bound)


def _fill(analysis: Analysis, bound: Mapping[str, object]) -> str:
    params = {p.name: p for p in analysis.params}

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            inner = get_analysis(match.group(2))
            body = _fill(inner, {p.name: bound[p.name] for p in inner.params})
            return _FINAL_ORDER.sub("\n", body)
        return _literal(params[match.group(2)], bound[match.group(2)])

    return _PLACEHOLDER.sub(replace, analysis.body)


def run_analysis(
    settings: Settings,
    name: str,
    params: Mapping[str, object] | None = None,
    *,
    engine: Engine | SqlEngine = "duckdb",
    now: datetime | None = None,
) -> QueryResult:
    """Run the named analysis ``name`` with ``params`` over the lake.

    Args:
        settings: The platform's settings.
        name: The analysis (see :func:`analyses`).
        params: Parameter values by name, as text or Python values; defaults for the rest.
        engine: ``duckdb``, ``spark``, or an open engine to reuse (a live
            application keeps one: its tables stay open between queries).
        now: What ``now`` and ages are relative to (default: the clock).

    Returns:
        The result; ``.table`` is an Arrow table, ``.columns``/``.rows`` Python values.

    Raises:
        AnalysisNotFoundError: No analysis is called ``name``.
        ParamError: An unknown parameter, or a value that does not fit its type.
        MissingTableError: A table it reads does not exist yet.
        QueryError: The engine failed.
    """
    sql = render(get_analysis(name), settings, params, now=now)
    if not isinstance(engine, str):
        return engine.query(sql)
    opened = open_engine(settings, engine)
    try:
        return opened.query(sql)
    finally:
        opened.close()
