"""Forecast accuracy: MAE and sMAPE, in plain Python and as Spark aggregates.

Both forms compute the same numbers (the unit tests hold them to it): the
Python functions for small lists and doctests, :func:`accuracy` for a holdout
DataFrame of any size in one Spark job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pyspark.sql import Column
from pyspark.sql import functions as F

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["accuracy", "mae", "smape", "smape_term"]


def _pairs(actual: Sequence[float], predicted: Sequence[float]) -> list[tuple[float, float]]:
    if len(actual) != len(predicted):
        msg = f"{len(actual)} actual values but {len(predicted)} predictions"
        raise ValueError(msg)
    if not actual:
        msg = "no values to score"
        raise ValueError(msg)
    return list(zip(actual, predicted, strict=True))


def mae(actual: Sequence[float], predicted: Sequence[float]) -> float:
    """Mean absolute error, ``(1/n) Σ |A_i - F_i|``, in the values' unit.

    >>> mae([1.0, 2.0, 4.0], [1.0, 3.0, 2.0])
    1.0
    """
    pairs = _pairs(actual, predicted)
    return sum(abs(a - f) for a, f in pairs) / len(pairs)


def smape(actual: Sequence[float], predicted: Sequence[float]) -> float:
    """Symmetric mean absolute percentage error, in percent (0 to 200).

    ``sMAPE = (100 / n) Σ 2 |F_i - A_i| / (|A_i| + |F_i|)``, where a term
    whose denominator is zero (actual and forecast both exactly 0, a perfect
    forecast) counts as 0. This is the definition of the M3/M4 competitions
    (Makridakis): it is bounded by 200 % and, unlike MAPE, defined when the
    actual value is 0.

    >>> round(smape([100.0, 0.0, 0.0], [110.0, 0.0, 5.0]), 4)
    69.8413
    """
    pairs = _pairs(actual, predicted)
    total = 0.0
    for a, f in pairs:
        denominator = abs(a) + abs(f)
        if denominator > 0:
            total += 2 * abs(f - a) / denominator
    return 100 * total / len(pairs)


def smape_term(actual: Column, predicted: Column) -> Column:
    """One row's sMAPE term ``2 |F - A| / (|A| + |F|)`` (0 when both are 0), as a Column."""
    denominator = F.abs(actual) + F.abs(predicted)
    return F.when(denominator > 0, 2 * F.abs(predicted - actual) / denominator).otherwise(
        F.lit(0.0)
    )


def accuracy(
    rows: DataFrame,
    *,
    actual: str,
    predictions: Mapping[str, str],
    by: str | None = None,
) -> list[dict[str, object]]:
    """MAE and sMAPE of several forecasts of the same actual values, in one Spark job.

    Only rows where the actual value and every forecast are present count, so
    each forecast is scored on exactly the same rows.

    Args:
        rows: The rows to score.
        actual: Column of the actual values.
        predictions: Forecast name → its column (``{"model": "forecast", ...}``).
        by: Also group by this column (one result per value, plus the total).

    Returns:
        One mapping per group (the total first, ``group`` None): ``group``,
        ``rows`` and, per forecast name, ``<name>_mae`` and ``<name>_smape`` (%).
    """
    present = F.col(actual).isNotNull()
    for column in predictions.values():
        present = present & F.col(column).isNotNull()
    scored = rows.where(present)
    aggregates = [F.count(F.lit(1)).alias("rows")]
    for name, column in predictions.items():
        error = F.abs(F.col(column) - F.col(actual))
        aggregates.append(F.avg(error).alias(f"{name}_mae"))
        aggregates.append(
            (100 * F.avg(smape_term(F.col(actual), F.col(column)))).alias(f"{name}_smape")
        )
    total = scored.agg(*aggregates).first()
    results: list[dict[str, object]] = [{"group": None, **(total.asDict() if total else {})}]
    if by is not None:
        grouped = scored.groupBy(by).agg(*aggregates).orderBy(by).collect()
        results += [{"group": row[by], **row.asDict()} for row in grouped]
        for result in results[1:]:
            result.pop(by, None)
    return results
