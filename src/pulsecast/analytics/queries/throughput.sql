-- Records received and events landed in the lake per minute, with the entities that landed.
-- received counts the Kafka records of the stream that the streaming job read
-- (bronze, valid or not), by the minute of their Kafka timestamp. landed counts
-- the events the job accepted into silver, by the minute their silver file was
-- written (its write time in the Delta log, as in freshness), and entities the
-- distinct entities among them. Divided by 60, a minute's counts are the
-- events per second in and processed. Files rewritten by pulsecast lake
-- optimize hold several batches; their events are left out, as in freshness.
--
-- param: stream: stream = telemetry -- the stream
-- param: since: timestamp = 7d -- earliest minute
-- param: until: timestamp = max -- minutes before this
WITH received AS (
  SELECT date_trunc('minute', b.kafka_timestamp) AS minute, count(*) AS received
  FROM bronze_{stream} AS b
  WHERE b.ingest_date >= CAST({since} AS DATE)
    AND b.ingest_date <= CAST({until} AS DATE)
    AND b.kafka_timestamp >= {since}
    AND b.kafka_timestamp < {until}
  GROUP BY date_trunc('minute', b.kafka_timestamp)
),
written AS (
  SELECT f.min_batch_id AS batch_id, max(f.written_at) AS written_at
  FROM lake_files AS f
  WHERE f.table_name = 'silver_{stream}'
    AND f.min_batch_id = f.max_batch_id
    AND f.written_at >= {since}
    AND f.written_at < {until}
  GROUP BY f.min_batch_id
),
landed AS (
  SELECT date_trunc('minute', w.written_at) AS minute,
         count(*) AS landed,
         count(DISTINCT s.key) AS entities
  FROM silver_{stream} AS s
  JOIN written AS w ON w.batch_id = s.batch_id
  -- ingest time precedes the write: this lets the files' statistics skip the
  -- rest of silver (a day of margin for a job that was stopped for a while).
  WHERE s.ingest_time >= {since} - INTERVAL 1 DAY
    AND s.ingest_time < {until}
  GROUP BY date_trunc('minute', w.written_at)
)
SELECT
  coalesce(r.minute, l.minute) AS minute,
  CAST(coalesce(r.received, 0) AS BIGINT) AS received,
  CAST(coalesce(l.landed, 0) AS BIGINT) AS landed,
  CAST(coalesce(l.entities, 0) AS BIGINT) AS entities
FROM received AS r
FULL OUTER JOIN landed AS l ON l.minute = r.minute
ORDER BY 1
