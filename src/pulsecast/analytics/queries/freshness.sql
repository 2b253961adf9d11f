-- Lag from event time to the lake, per hour the events landed: median, p95 and worst.
-- An event lands in the lake when the streaming job's silver commit of its
-- micro-batch finishes. The job records, with each batch, histograms of the
-- seconds from each event's time (lag_s) and from its ingest time, when the
-- producer sent it (pipeline_s: the part the platform is responsible for), to
-- that moment (batches_<stream>, see pulsecast.stream.batch_stats): the
-- quantiles here are read from the hour's summed histograms, within 2% of the
-- exact ones; lag_max_s is exact.
--
-- param: stream: stream = telemetry -- the stream
-- param: since: timestamp = 7d -- earliest write
-- param: until: timestamp = max -- writes before this
WITH recent AS (
  SELECT date_trunc('hour', b.written_at) AS hour, b.batch_id, b.measure, b.seconds, b.n
  FROM batches_{stream} AS b
  WHERE b.measure IN ('accepted', 'lag', 'pipeline', 'lag_max')
    AND b.batch_date >= CAST({since} AS DATE)
    AND b.batch_date <= CAST({until} AS DATE)
    AND b.written_at >= {since}
    AND b.written_at < {until}
),
buckets AS (
  SELECT hour, measure, seconds, sum(n) AS n
  FROM recent
  WHERE measure IN ('lag', 'pipeline')
  GROUP BY hour, measure, seconds
),
-- Each bucket with the events at or below it, out of the hour's events.
ranked AS (
  SELECT hour, measure, seconds,
         sum(n) OVER (PARTITION BY hour, measure ORDER BY seconds
                      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS upto,
         sum(n) OVER (PARTITION BY hour, measure) AS total
  FROM buckets
),
quantiles AS (
  SELECT hour,
         min(CASE WHEN measure = 'lag' AND upto >= 0.5 * total THEN seconds END) AS lag_p50_s,
         min(CASE WHEN measure = 'lag' AND upto >= 0.95 * total THEN seconds END) AS lag_p95_s,
         min(CASE WHEN measure = 'pipeline' AND upto >= 0.95 * total THEN seconds END)
           AS pipeline_p95_s
  FROM ranked
  GROUP BY hour
),
landed AS (
  SELECT hour,
         count(DISTINCT CASE WHEN measure = 'accepted' THEN batch_id END) AS batches,
         sum(CASE WHEN measure = 'accepted' THEN n ELSE 0 END) AS events,
         max(CASE WHEN measure = 'lag_max' THEN seconds END) AS lag_max_s
  FROM recent
  GROUP BY hour
)
SELECT
  l.hour,
  CAST(l.batches AS BIGINT) AS batches,
  CAST(l.events AS BIGINT) AS events,
  q.lag_p50_s,
  q.lag_p95_s,
  l.lag_max_s,
  q.pipeline_p95_s
FROM landed AS l
JOIN quantiles AS q ON q.hour = l.hour
ORDER BY l.hour
