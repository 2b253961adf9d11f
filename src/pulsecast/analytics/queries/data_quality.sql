-- Records received, accepted, rejected and late per hour of arrival, with their rates.
-- Read from what the streaming job records of each micro-batch
-- (batches_<stream>, see pulsecast.stream.batch_stats). received counts the
-- Kafka records of the stream the job read (valid or not), accepted the
-- events it wrote to silver and rejected the others: dead-lettered (invalid:
-- malformed_json, missing_field, wrong_type, out_of_range...; or late: older
-- than the watermark) or dropped as the repeat of an event id silver already
-- held or an earlier record of the same batch held (duplicate). The rejections analysis splits them by reason. late counts
-- accepted events older than the newest event time of the batches before
-- theirs (out of order, within the allowed lateness). Events rejected before
-- Kafka (by the HTTP ingest or a producer) never reach the job and are not
-- counted. The hour is the Kafka timestamp's.
--
-- param: stream: stream = telemetry -- the stream
-- param: since: timestamp = 7d -- earliest arrival (Kafka timestamp)
-- param: until: timestamp = max -- arrivals before this
WITH hours AS (
  SELECT date_trunc('hour', b.minute) AS hour,
         sum(CASE WHEN b.measure = 'received' THEN b.n ELSE 0 END) AS received,
         sum(CASE WHEN b.measure = 'accepted' THEN b.n ELSE 0 END) AS accepted,
         sum(CASE WHEN b.measure = 'rejected' THEN b.n ELSE 0 END) AS rejected,
         sum(CASE WHEN b.measure = 'out_of_order' THEN b.n ELSE 0 END) AS late
  FROM batches_{stream} AS b
  WHERE b.measure IN ('received', 'accepted', 'rejected', 'out_of_order')
    -- a batch is written after its records arrived, unless the producer's clock (the
    -- Kafka timestamp's) runs ahead of the job's: a day of margin before the window
    AND b.batch_date >= CAST({since} - INTERVAL 1 DAY AS DATE)
    AND b.minute >= {since}
    AND b.minute < {until}
  GROUP BY date_trunc('hour', b.minute)
)
SELECT
  hour,
  CAST(received AS BIGINT) AS received,
  CAST(accepted AS BIGINT) AS accepted,
  CAST(rejected AS BIGINT) AS rejected,
  CAST(late AS BIGINT) AS late,
  CAST(rejected AS DOUBLE) / NULLIF(received, 0) AS rejected_rate,
  CAST(late AS DOUBLE) / NULLIF(accepted, 0) AS late_rate
FROM hours
ORDER BY hour
