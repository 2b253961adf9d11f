"""A small TOML writer for the settings the deployed machines read.

The standard library reads TOML (``tomllib``) but does not write it. Settings
dumped to plain values (tables, arrays, strings, numbers, booleans) are all
this needs: nested mappings become ``[dotted.tables]``, lists of mappings
become arrays of inline tables, and ``None`` (TOML has no null) is left out,
which reads back as the field's default.

>>> print(dumps({"kafka": {"port": 9092, "compression": "lz4"}}), end="")
[kafka]
port = 9092
compression = "lz4"
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["dumps"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else json.dumps(name, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string (same escapes, \uXXXX included).
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value if v is not None) + "]"
    if isinstance(value, Mapping):
        items = (f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None)
        return "{" + ", ".join(items) + "}"
    msg = f"cannot write {type(value).__name__} to TOML: {value!r}"
    raise TypeError(msg)


def _table(path: list[str], table: Mapping[str, Any], out: list[str]) -> None:
    scalars = [(k, v) for k, v in table.items() if v is not None and not isinstance(v, Mapping)]
    tables = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    if path and (scalars or not tables):
        if out:
            out.append("")
        out.append("[" + ".".join(_key(p) for p in path) + "]")
    out.extend(f"{_key(k)} = {_value(v)}" for k, v in scalars)
    for name, sub in tables:
        _table([*path, name], sub, out)


def dumps(data: Mapping[str, Any]) -> str:
    """A TOML document holding ``data``.

    Args:
        data: Plain values: mappings with string keys, lists, str, int, float, bool;
            ``None`` values are left out.

    Returns:
        The document, ending with a newline.

    Raises:
        TypeError: A value has no TOML form.
    """
    out: list[str] = []
    _table([], data, out)
    return "\n".join(out) + "\n"
