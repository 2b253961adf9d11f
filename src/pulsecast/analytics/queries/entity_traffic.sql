-- Readings and mean of each metric per entity and hour.
-- Read from the gold window table: the windows' counts are summed and their
-- means weighted by count, so the window must be tumbling (a sliding window
-- holds each reading several times). A reading is one value of one metric: an
-- event whose fields are all set gives one reading of each metric.
--
-- param: stream: stream = telemetry -- the stream
-- param: window: window = 1m -- the gold window table to read
-- param: since: timestamp = 7d -- earliest window start
-- param: until: timestamp = max -- window starts before this
-- param: key: str = -- one entity (empty: every entity)
-- param: metric: str = -- one metric (empty: every metric)
SELECT
  g.key,
  g.metric,
  date_trunc('hour', g.window_start) AS hour,
  CAST(sum(g.count) AS BIGINT) AS readings,
  sum(g.mean * g.count) / sum(g.count) AS mean,
  min(g.min) AS min,
  max(g.max) AS max
FROM gold_{stream}_{window} AS g
WHERE g.window_date >= CAST({since} AS DATE)
  AND g.window_date <= CAST({until} AS DATE)
  AND g.window_start >= {since}
  AND g.window_start < {until}
  AND ({key} = '' OR g.key = {key})
  AND ({metric} = '' OR g.metric = {metric})
GROUP BY g.key, g.metric, date_trunc('hour', g.window_start)
ORDER BY g.key, g.metric, hour
