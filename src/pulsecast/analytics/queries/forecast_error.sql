-- Live forecast error per entity, metric and model version: MAE, RMSE, bias and MAPE.
-- The forecasts of forecast_vs_actual, summarised: how many were checked,
-- the mean absolute error, the root mean squared error, the bias (mean of
-- actual minus forecast: positive when the model forecasts too low) and the
-- mean absolute percentage error (over the forecasts whose actual is not 0).
-- It reads the forecasts as the streaming job resolved them when their
-- horizon passed (gold_{stream}_forecast_errors, same rule and columns as
-- forecast_vs_actual), not the scores: a few files a day instead of a join of
-- every window. So it covers the forecasts the live job made and resolved
-- with that table; forecast_vs_actual, computed from the scores, lists every
-- forecast in the scores table.
--
-- param: stream: stream = telemetry -- the stream
-- param: since: timestamp = 7d -- earliest window a forecast was made at
-- param: until: timestamp = max -- forecasts made at windows before this
-- param: key: str = -- one entity (empty: every entity)
-- param: metric: str = -- one metric (empty: every metric)
SELECT
  key,
  metric,
  model_version,
  count(*) AS forecasts,
  avg(abs_error) AS mae,
  sqrt(avg(error * error)) AS rmse,
  avg(error) AS bias,
  avg(pct_error) AS mape
FROM gold_{stream}_forecast_errors
WHERE window_date >= CAST({since} AS DATE)
  AND window_date <= CAST({until} AS DATE)
  AND window_start >= {since}
  AND window_start < {until}
  AND ({key} = '' OR key = {key})
  AND ({metric} = '' OR metric = {metric})
GROUP BY key, metric, model_version
ORDER BY key, metric, model_version
