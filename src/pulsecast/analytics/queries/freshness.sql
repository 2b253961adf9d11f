-- Lag from event time to the lake, per hour the events landed: median, p95 and worst.
-- An event lands in the lake when the streaming job writes its silver file;
-- each file's write time is in the table's Delta log (lake_files), and the
-- file's batch_id statistics say which micro-batch wrote it. lag_s is from
-- the event's time to that write, pipeline_s from its ingest time (when the
-- producer sent it) to that write: the part the platform is responsible for.
-- Files rewritten by pulsecast lake optimize hold several batches and a later
-- write time; their events are left out.
--
-- param: stream: stream = telemetry -- the stream
-- param: since: timestamp = 7d -- earliest write
-- param: until: timestamp = max -- writes before this
WITH written AS (
  SELECT f.min_batch_id AS batch_id, max(f.written_at) AS written_at
  FROM lake_files AS f
  WHERE f.table_name = 'silver_{stream}'
    AND f.min_batch_id = f.max_batch_id
    AND f.written_at >= {since}
    AND f.written_at < {until}
  GROUP BY f.min_batch_id
),
lags AS (
  SELECT w.written_at, s.batch_id,
         pc_seconds(s.event_time, w.written_at) AS lag_s,
         pc_seconds(s.ingest_time, w.written_at) AS pipeline_s
  FROM silver_{stream} AS s
  JOIN written AS w ON w.batch_id = s.batch_id
  -- ingest time precedes the write: this lets the files' statistics skip the
  -- rest of silver (a day of margin for a job that was stopped for a while).
  WHERE s.ingest_time >= {since} - INTERVAL 1 DAY
    AND s.ingest_time < {until}
)
SELECT
  date_trunc('hour', written_at) AS hour,
  count(DISTINCT batch_id) AS batches,
  count(*) AS events,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY lag_s) AS lag_p50_s,
  percentile_cont(0.95) WITHIN GROUP (ORDER BY lag_s) AS lag_p95_s,
  max(lag_s) AS lag_max_s,
  percentile_cont(0.95) WITHIN GROUP (ORDER BY pipeline_s) AS pipeline_p95_s
FROM lags
GROUP BY date_trunc('hour', written_at)
ORDER BY hour
