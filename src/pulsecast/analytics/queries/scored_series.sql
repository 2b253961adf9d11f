-- The series live scoring has scored: per entity and series, windows, the last one and flags.
-- From the scores table live scoring writes; the series are each metric's
-- mean, the log of its standard deviation (metric.log_stddev) and the count of
-- events (events). It lists what can be picked in the dashboard's entity view.
--
-- param: stream: stream = telemetry -- the stream
-- param: since: timestamp = 7d -- earliest window start
-- param: until: timestamp = max -- window starts before this
SELECT
  s.key,
  s.metric,
  count(*) AS windows,
  max(s.window_start) AS last_window,
  CAST(count_if(s.flagged) AS BIGINT) AS flags
FROM gold_{stream}_scores AS s
WHERE s.window_date >= CAST({since} AS DATE)
  AND s.window_date <= CAST({until} AS DATE)
  AND s.window_start >= {since}
  AND s.window_start < {until}
GROUP BY s.key, s.metric
ORDER BY s.key, s.metric
