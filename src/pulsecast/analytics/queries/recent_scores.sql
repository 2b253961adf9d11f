-- The live detector's scores and forecasts, newest window first.
-- One row per entity, series and window of the scores table live scoring
-- writes: the window's value and count, its anomaly score and flag (a score of
-- 0.5 or more), and the live forecast made at that window (the expected mean of
-- the horizon_min minutes after it, by model_version; null when none was
-- made). With min_score = 0.5 it lists the alerts.
--
-- param: stream: stream = telemetry -- the stream
-- param: since: timestamp = 7d -- earliest window start
-- param: until: timestamp = max -- window starts before this
-- param: key: str = -- one entity (empty: every entity)
-- param: metric: str = -- one series (empty: every series)
-- param: min_score: float = 0.0 -- lowest score listed (0.5: flags only)
-- param: limit: int = 5000 -- most rows (the newest)
SELECT
  s.key,
  s.metric,
  s.window_start,
  s.window_end,
  s.value,
  s.count,
  s.score,
  s.flagged,
  s.forecast,
  s.horizon_min,
  s.model_version
FROM gold_{stream}_scores AS s
WHERE s.window_date >= CAST({since} AS DATE)
  AND s.window_date <= CAST({until} AS DATE)
  AND s.window_start >= {since}
  AND s.window_start < {until}
  AND s.score >= {min_score}
  AND ({key} = '' OR s.key = {key})
  AND ({metric} = '' OR s.metric = {metric})
ORDER BY s.window_start DESC, s.key, s.metric
LIMIT {limit}
