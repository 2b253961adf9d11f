-- Records received, accepted, rejected and late per hour of arrival, with their rates.
-- Built on what the lake records: bronze holds every record the streaming job
-- read (valid or not) and silver every accepted event with its Kafka
-- partition and offset. rejected counts the records of bronze with no event in
-- silver: dead-lettered by the job (invalid: malformed_json, missing_field,
-- wrong_type, out_of_range...; or late: older than the watermark) or dropped
-- as the repeat of an event id already in silver. The lake does not keep the
-- reason of each rejection: the dead letters carry it in their headers on the
-- <stream>.dlq topic (pulsecast consume --dlq). late counts accepted events
-- older than the newest event time of the batches before theirs (out of
-- order, within the allowed lateness), among the batches ingested from a day
-- before the window on. Events rejected before Kafka (by the
-- HTTP ingest or a producer) never reach bronze and are not counted. The hour
-- is the Kafka timestamp's.
--
-- param: stream: stream = telemetry -- the stream
-- param: since: timestamp = 7d -- earliest arrival (Kafka timestamp)
-- param: until: timestamp = max -- arrivals before this
WITH received AS (
  SELECT b.partition AS kafka_partition, b.offset AS kafka_offset,
         date_trunc('hour', b.kafka_timestamp) AS hour
  FROM bronze_{stream} AS b
  WHERE b.ingest_date >= CAST({since} AS DATE)
    AND b.ingest_date <= CAST({until} AS DATE)
    AND b.kafka_timestamp >= {since}
    AND b.kafka_timestamp < {until}
),
-- The batches of the window and of the day before it, by ingest time as in
-- accepted (the files' statistics skip the rest of silver); a batch's events
-- are late against the newest event time of the batches before it.
batches AS (
  SELECT s.batch_id, max(s.event_time) AS newest
  FROM silver_{stream} AS s
  WHERE s.ingest_time >= {since} - INTERVAL 1 DAY
    AND s.ingest_time < {until} + INTERVAL 1 DAY
  GROUP BY s.batch_id
),
earlier AS (
  SELECT batch_id,
         max(newest) OVER (ORDER BY batch_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
           AS newest_before
  FROM batches
),
accepted AS (
  SELECT s.kafka_partition, s.kafka_offset,
         coalesce(s.event_time < e.newest_before, false) AS late
  FROM silver_{stream} AS s
  JOIN earlier AS e ON e.batch_id = s.batch_id
  -- ingest time is the producer's, close to the Kafka timestamp: a day either
  -- side lets the files' statistics skip the rest of silver.
  WHERE s.ingest_time >= {since} - INTERVAL 1 DAY
    AND s.ingest_time < {until} + INTERVAL 1 DAY
)
SELECT
  r.hour,
  count(*) AS received,
  count(a.kafka_offset) AS accepted,
  count(*) - count(a.kafka_offset) AS rejected,
  CAST(count_if(a.late) AS BIGINT) AS late,
  CAST(count(*) - count(a.kafka_offset) AS DOUBLE) / count(*) AS rejected_rate,
  CAST(count_if(a.late) AS DOUBLE) / NULLIF(count(a.kafka_offset), 0) AS late_rate
FROM received AS r
LEFT JOIN accepted AS a
  ON a.kafka_partition = r.kafka_partition AND a.kafka_offset = r.kafka_offset
GROUP BY r.hour
ORDER BY r.hour
