-- Records received and events landed in the lake per minute, with the entities that landed.
-- Read from what the streaming job records of each micro-batch
-- (batches_<stream>, see pulsecast.stream.batch_stats), not from bronze and
-- silver: a few rows per batch instead of every event. received counts the
-- Kafka records of the stream that the job read (valid or not), by the minute
-- of their Kafka timestamp. landed counts the events the job wrote to silver,
-- by the minute the batch's silver commit finished, and entities the most
-- distinct entities one batch of that minute wrote (the distinct entities of
-- the whole minute when it holds one batch). Divided by 60, a minute's counts
-- are the events per second in and processed.
--
-- param: stream: stream = telemetry -- the stream
-- param: since: timestamp = 7d -- earliest minute
-- param: until: timestamp = max -- minutes before this
WITH received AS (
  SELECT b.minute, sum(b.n) AS received
  FROM batches_{stream} AS b
  WHERE b.measure = 'received'
    -- a batch is written after its records arrived, unless the producer's clock (the
    -- Kafka timestamp's) runs ahead of the job's: a day of margin before the window
    AND b.batch_date >= CAST({since} - INTERVAL 1 DAY AS DATE)
    AND b.minute >= {since}
    AND b.minute < {until}
  GROUP BY b.minute
),
landed AS (
  SELECT date_trunc('minute', b.written_at) AS minute,
         sum(CASE WHEN b.measure = 'accepted' THEN b.n ELSE 0 END) AS landed,
         max(CASE WHEN b.measure = 'entities' THEN b.n ELSE 0 END) AS entities
  FROM batches_{stream} AS b
  WHERE b.measure IN ('accepted', 'entities')
    AND b.batch_date >= CAST({since} AS DATE)
    AND b.batch_date <= CAST({until} AS DATE)
    AND b.written_at >= {since}
    AND b.written_at < {until}
  GROUP BY date_trunc('minute', b.written_at)
)
SELECT
  coalesce(r.minute, l.minute) AS minute,
  CAST(coalesce(r.received, 0) AS BIGINT) AS received,
  CAST(coalesce(l.landed, 0) AS BIGINT) AS landed,
  CAST(coalesce(l.entities, 0) AS BIGINT) AS entities
FROM received AS r
FULL OUTER JOIN landed AS l ON l.minute = r.minute
ORDER BY 1
