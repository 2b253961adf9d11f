-- Each live forecast next to what happened: actual, error, absolute and percentage error.
-- A forecast made at a window (its forecast column in the scores table) is the
-- expected mean of the horizon_min minutes after that window, so its actual is
-- the count-weighted mean of the value of the windows starting after it,
-- within the horizon, as the streaming job checks it (pulsecast.ml.live_error).
-- A forecast is listed once its horizon has passed (the table holds a window
-- starting at its end or later) and held data. error is actual minus
-- forecast; pct_error is the absolute error in percent of the actual (null
-- when the actual is 0).
--
-- param: stream: stream = telemetry -- the stream
-- param: since: timestamp = 7d -- earliest window a forecast was made at
-- param: until: timestamp = max -- forecasts made at windows before this
-- param: key: str = -- one entity (empty: every entity)
-- param: metric: str = -- one metric (empty: every metric)
WITH scores AS (
  SELECT s.key, s.metric, s.window_start, s.value, s.count, s.forecast, s.horizon_min,
         s.model_version
  FROM gold_{stream}_scores AS s
  WHERE s.window_date >= CAST({since} AS DATE)
    AND s.window_start >= {since}
    AND ({key} = '' OR s.key = {key})
    AND ({metric} = '' OR s.metric = {metric})
),
made AS (
  SELECT key, metric, window_start, forecast, horizon_min, model_version
  FROM scores
  WHERE forecast IS NOT NULL AND horizon_min IS NOT NULL AND window_start < {until}
),
-- Forecasts and actuals are cut into buckets as long as the longest horizon, so
-- a forecast's horizon lies in its own bucket or the next: the join compares a
-- forecast with the windows of two buckets of its series, not with all of them.
span AS (
  SELECT max(horizon_min) * 60 AS bucket_s FROM made
),
made_bucket AS (
  SELECT m.key, m.metric, m.window_start, m.forecast, m.horizon_min, m.model_version,
         CAST(floor(pc_seconds(TIMESTAMP '1970-01-01 00:00:00', m.window_start) / s.bucket_s)
              AS BIGINT) + o.k AS bucket
  FROM made AS m
  CROSS JOIN span AS s
  CROSS JOIN (VALUES (0), (1)) AS o(k)
),
-- Only the series of metrics that were forecast can be actuals (not events,
-- metric.log_stddev...): half of the rows the join would hash otherwise.
actual_bucket AS (
  SELECT a.key, a.metric, a.window_start, a.value, a.count,
         CAST(floor(pc_seconds(TIMESTAMP '1970-01-01 00:00:00', a.window_start) / s.bucket_s)
              AS BIGINT) AS bucket
  FROM scores AS a
  CROSS JOIN span AS s
  WHERE a.metric IN (SELECT metric FROM made)
),
resolved AS (
  SELECT m.key, m.metric, m.window_start, m.model_version, m.horizon_min, m.forecast,
         sum(a.value * a.count) / sum(a.count) AS actual
  FROM made_bucket AS m
  JOIN actual_bucket AS a
    ON a.key = m.key AND a.metric = m.metric AND a.bucket = m.bucket
   AND a.window_start > m.window_start
   AND pc_seconds(m.window_start, a.window_start) <= m.horizon_min * 60
  CROSS JOIN (SELECT max(window_start) AS newest FROM scores) AS n
  WHERE pc_seconds(m.window_start, n.newest) >= m.horizon_min * 60
  GROUP BY m.key, m.metric, m.window_start, m.model_version, m.horizon_min, m.forecast
  HAVING sum(a.count) > 0
)
SELECT
  key,
  metric,
  window_start,
  model_version,
  horizon_min,
  forecast,
  actual,
  actual - forecast AS error,
  abs(actual - forecast) AS abs_error,
  100 * abs(actual - forecast) / NULLIF(abs(actual), 0) AS pct_error
FROM resolved
ORDER BY key, metric, window_start
