"""Spark failures pyspark does not translate become one line that says what happened."""

from __future__ import annotations

from pulsecast.analytics.sql import spark_failure

# py4j's report of `pulsecast sql --engine spark --run forecast_vs_actual` over 10 million
# events (2026-11-29), shortened: the result did not fit the driver.
LOST = """An error occurred while calling o83.getResult.
: org.apache.spark.SparkException: Exception thrown in awaitResult:
\tat org.apache.spark.util.SparkThreadUtils$.awaitResult(SparkThreadUtils.scala:70)
\tat org.apache.spark.util.SparkThreadUtils$.awaitResult(SparkThreadUtils.scala:44)
Caused by: org.apache.spark.SparkException: Job aborted due to stage failure: Task 1 in \
stage 54.0 failed 1 times, most recent failure: Lost task 1.0 in stage 54.0 (TID 82) \
(localhost executor driver): TaskResultLost (result lost from block manager)
Driver stacktrace:
\tat org.apache.spark.scheduler.DAGScheduler.failJobAndIndependentStages(DAGScheduler.scala:2935)
"""


def test_spark_failure_names_the_innermost_cause_and_what_to_do() -> None:
    assert spark_failure(LOST) == (
        "SparkException: Job aborted due to stage failure: Task 1 in stage 54.0 failed 1 "
        "times, most recent failure: Lost task 1.0 in stage 54.0 (TID 82) (localhost "
        "executor driver): TaskResultLost (result lost from block manager) (the result is "
        "too large for the Spark driver: filter the query, or raise spark.driver_memory)"
    )


def test_spark_failure_over_the_result_size_limit_names_that_limit() -> None:
    text = (
        "An error occurred while calling o9.collectToPython.\n"
        ": org.apache.spark.SparkException: Job aborted due to stage failure: Total size of "
        "serialized results of 3 tasks (1034.2 MiB) is bigger than spark.driver.maxResultSize "
        "(1024.0 MiB)\n\tat x.y(Z.scala:1)\n"
    )
    assert spark_failure(text).endswith(
        "(the result is too large for the Spark driver: filter the query, or raise "
        "spark.driver.maxResultSize in spark.conf)"
    )


def test_spark_failure_without_a_cause_is_the_error_thrown() -> None:
    text = (
        "An error occurred while calling o12.collect.\n"
        ": java.lang.IllegalStateException: boom\n\tat x.y(Z.java:1)\n"
    )
    assert spark_failure(text) == "IllegalStateException: boom"
