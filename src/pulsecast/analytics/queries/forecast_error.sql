-- Live forecast error per entity, metric and model version: MAE, RMSE, bias and MAPE.
-- The forecasts of forecast_vs_actual, summarised: how many were checked,
-- the mean absolute error, the root mean squared error, the bias (mean of
-- actual minus forecast: positive when the model forecasts too low) and the
-- mean absolute percentage error (over the forecasts whose actual is not 0).
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
FROM ({@forecast_vs_actual}) AS f
GROUP BY key, metric, model_version
ORDER BY key, metric, model_version
