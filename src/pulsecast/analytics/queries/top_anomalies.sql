-- The highest anomaly scores of the live detector, highest first.
-- From the scores table live scoring writes (one row per entity, series and
-- window). A score of 0.5 or more is a flag, and an alert; the series are each
-- metric's mean, the log of its standard deviation (metric.log_stddev) and
-- the count of events (events).
--
-- param: stream: stream = telemetry -- the stream
-- param: since: timestamp = 7d -- earliest window start
-- param: until: timestamp = max -- window starts before this
-- param: key: str = -- one entity (empty: every entity)
-- param: min_score: float = 0.5 -- lowest score listed (0.5: flags only)
-- param: limit: int = 20 -- most rows
SELECT
  s.key,
  s.metric,
  s.window_start,
  s.window_end,
  s.value,
  s.score,
  s.flagged,
  s.detector
FROM gold_{stream}_scores AS s
WHERE s.window_date >= CAST({since} AS DATE)
  AND s.window_date <= CAST({until} AS DATE)
  AND s.window_start >= {since}
  AND s.window_start < {until}
  AND s.score >= {min_score}
  AND ({key} = '' OR s.key = {key})
ORDER BY s.score DESC, s.window_start DESC, s.key, s.metric
LIMIT {limit}
