"""Rendering query results as a text table, JSON lines or CSV."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pulsecast.analytics.sql import QueryResult

__all__ = ["render"]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | bytearray):
        return value.decode(errors="replace")
    return value


def render(result: QueryResult, fmt: str) -> str:
    """The result as ``table`` (aligned text), ``json`` (one object per line) or ``csv``."""
    rows = [[_plain(v) for v in row] for row in result.rows]
    if fmt == "json":
        return "\n".join(json.dumps(dict(zip(result.columns, r, strict=True))) for r in rows)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(rows)
        return out.getvalue().rstrip("\n")
    text = [[("NULL" if v is None else str(v)) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in text]) for i, c in enumerate(result.columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(result.columns, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in text]
    return "\n".join([line, "  ".join("-" * w for w in widths), *body, f"({len(rows)} rows)"])
