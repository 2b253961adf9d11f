"""Rendering query results as a text table, JSON lines or CSV, and ``--explain`` reports."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pulsecast.analytics.explain import Explanation
from pulsecast.analytics.named import Analysis
from pulsecast.analytics.sql import QueryResult

__all__ = ["human_bytes", "render", "render_analyses", "render_explanation"]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        # DuckDB's sums of integers are 128-bit: Arrow hands them over as decimals.
        exponent = value.as_tuple().exponent
        return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)
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


def human_bytes(size: float) -> str:
    """``1536`` → ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    raise AssertionError  # pragma: no cover (the loop returns)


def render_explanation(explanation: Explanation, fmt: str) -> str:
    """An ``--explain`` report: per table, what was read of what there is; then the plan."""
    if fmt == "json":
        return json.dumps(explanation.as_dict())
    lines: list[str] = []
    if explanation.scans:
        header = ("table", "partitions read", "files read", "size read")
        cells = [
            (
                s.table,
                f"{s.partitions_read:,} of {s.partitions_total:,}",
                f"{s.files_read:,} of {s.files_total:,}",
                f"{human_bytes(s.bytes_read)} of {human_bytes(s.bytes_total)}",
            )
            for s in explanation.scans
        ]
        widths = [max(len(r[i]) for r in [header, *cells]) for i in range(len(header))]
        for row in [header, *cells]:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        for s in explanation.scans:
            kept, skipped = s.files_after_partition_filters, s.files_after_data_skipping
            if kept is not None and skipped is not None:
                lines.append(
                    f"{s.table}: Delta kept {kept:,} of {s.files_total:,} files after "
                    f"partition filters, {skipped:,} after min/max data skipping"
                )
    else:
        lines.append("the query reads no lake table")
    lines.append(f"{explanation.rows:,} rows in {explanation.seconds:.3f} s ({explanation.engine})")
    lines += ["", "plan:", explanation.plan.rstrip()]
    return "\n".join(lines)


def render_analyses(analyses: list[Analysis], fmt: str) -> str:
    """``pulsecast sql --list``: each analysis with its summary and parameters.

    ``table`` is for reading; ``json`` gives one object per analysis and line
    (with the whole description); ``csv`` one row per analysis and parameter.
    """
    if fmt == "json":
        return "\n".join(
            json.dumps(
                {
                    "name": a.name,
                    "summary": a.summary,
                    "description": a.description,
                    "params": [
                        {"name": p.name, "type": p.type, "default": p.default, "help": p.help}
                        for p in a.params
                    ],
                }
            )
            for a in analyses
        )
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["analysis", "summary", "param", "type", "default", "help"])
        for a in analyses:
            for p in a.params:
                writer.writerow([a.name, a.summary, p.name, p.type, p.default, p.help])
        return out.getvalue().rstrip("\n")
    lines: list[str] = []
    for a in analyses:
        lines.append(f"{a.name}: {a.summary}")
        cells = [
            (p.name, p.type, f"= {p.default}" if p.default else "= (empty)", p.help)
            for p in a.params
        ]
        widths = [max(len(c[i]) for c in cells) for i in range(3)] if cells else []
        for c in cells:
            head = "  ".join(v.ljust(w) for v, w in zip(c[:3], widths, strict=True))
            lines.append(f"    {head}  {c[3]}".rstrip())
        lines.append("")
    lines.append("run one: pulsecast sql --run NAME [--param NAME=VALUE ...]")
    return "\n".join(lines)
