-- Trend of each metric per entity: its hourly means, first and last, and the slope.
-- One row per entity and metric over the range: hours with data, readings,
-- the mean, the first and the last hour's mean, the least-squares slope of the
-- hourly means (units per hour; null with fewer than two hours) and the change
-- from the first hour to the last in percent. Read from the gold window table
-- (tumbling), like entity_traffic.
--
-- param: stream: stream = telemetry -- the stream
-- param: window: window = 1m -- the gold window table to read
-- param: since: timestamp = 7d -- earliest window start
-- param: until: timestamp = max -- window starts before this
-- param: key: str = -- one entity (empty: every entity)
-- param: metric: str = -- one metric (empty: every metric)
WITH hourly AS (
  SELECT key, metric, hour, readings, mean FROM ({@entity_traffic}) AS t
)
SELECT
  key,
  metric,
  count(*) AS hours,
  CAST(sum(readings) AS BIGINT) AS readings,
  sum(mean * readings) / sum(readings) AS mean,
  min_by(mean, hour) AS first_hour_mean,
  max_by(mean, hour) AS last_hour_mean,
  CASE
    WHEN count(*) > 1
    THEN regr_slope(mean, pc_seconds(TIMESTAMP '1970-01-01 00:00:00', hour) / 3600)
  END AS slope_per_hour,
  100 * (max_by(mean, hour) - min_by(mean, hour)) / NULLIF(abs(min_by(mean, hour)), 0)
    AS change_pct
FROM hourly
GROUP BY key, metric
ORDER BY key, metric
