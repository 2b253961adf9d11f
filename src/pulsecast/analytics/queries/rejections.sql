-- Records rejected per hour of arrival and reason, with their share of the records received.
-- Read from what the streaming job records of each micro-batch
-- (batches_<stream>, see pulsecast.stream.batch_stats). The reasons are the
-- dead-letter topic's (malformed_json, missing_field, wrong_type,
-- out_of_range, late: older than the watermark...) and duplicate: the
-- repeat of an event id that silver or an earlier record of the same batch
-- held, dropped without a dead letter.
-- rate is the reason's records over every record received in the hour.
-- The hour is the Kafka timestamp's.
--
-- param: stream: stream = telemetry -- the stream
-- param: since: timestamp = 7d -- earliest arrival (Kafka timestamp)
-- param: until: timestamp = max -- arrivals before this
WITH counted AS (
  SELECT date_trunc('hour', b.minute) AS hour, b.measure, b.reason, sum(b.n) AS records
  FROM batches_{stream} AS b
  WHERE b.measure IN ('received', 'rejected')
    -- a batch is written after its records arrived, unless the producer's clock (the
    -- Kafka timestamp's) runs ahead of the job's: a day of margin before the window
    AND b.batch_date >= CAST({since} - INTERVAL 1 DAY AS DATE)
    AND b.minute >= {since}
    AND b.minute < {until}
  GROUP BY date_trunc('hour', b.minute), b.measure, b.reason
)
SELECT
  r.hour,
  r.reason,
  CAST(r.records AS BIGINT) AS records,
  CAST(r.records AS DOUBLE) / NULLIF(t.records, 0) AS rate
FROM counted AS r
JOIN counted AS t ON t.hour = r.hour AND t.measure = 'received'
WHERE r.measure = 'rejected'
ORDER BY r.hour, r.reason
