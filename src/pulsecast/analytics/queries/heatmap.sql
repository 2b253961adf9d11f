-- Readings and mean of each metric by day of the week and hour of the day (UTC).
-- weekday is 0 for Monday to 6 for Sunday, hour 0 to 23; every entity
-- together, or one. Made of entity_traffic's hourly rows (gold, tumbling window).
--
-- param: stream: stream = telemetry -- the stream
-- param: window: window = 1m -- the gold window table to read
-- param: since: timestamp = 7d -- earliest window start
-- param: until: timestamp = max -- window starts before this
-- param: key: str = -- one entity (empty: every entity)
-- param: metric: str = -- one metric (empty: every metric)
SELECT
  metric,
  pc_weekday(hour) AS weekday,
  CAST(extract(HOUR FROM hour) AS INT) AS hour,
  CAST(sum(readings) AS BIGINT) AS readings,
  sum(mean * readings) / sum(readings) AS mean
FROM ({@entity_traffic}) AS t
GROUP BY metric, pc_weekday(hour), CAST(extract(HOUR FROM hour) AS INT)
ORDER BY 1, 2, 3
