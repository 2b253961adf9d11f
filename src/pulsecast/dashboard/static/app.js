// pulsecast's live dashboard: polls the JSON endpoints and redraws in place (Plotly.react).
"use strict";

const CONFIG = JSON.parse(document.getElementById("config").textContent);
const view = { stream: CONFIG.stream, since: "24h", key: "", metric: "" };
const PLOT_CONFIG = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
let timer = null;
let loggedOut = false;

const $ = (id) => document.getElementById(id);

function fmt(value, digits = 1) {
  if (value === null || value === undefined) return "–";
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString("en");
  return Number(value).toFixed(digits);
}
function seconds(value) { return value === null || value === undefined ? "–" : fmt(value, 1) + " s"; }
function percent(value) { return value === null || value === undefined ? "–" : (100 * value).toFixed(2) + " %"; }
function when(iso) { return iso ? iso.replace("T", " ").slice(0, 16) : ""; }

async function get(path, params = {}) {
  const query = new URLSearchParams({ stream: view.stream, ...params });
  const response = await fetch(`/api/${path}?${query}`, { cache: "no-store" });
  if (response.status === 401) { sessionEnded(); throw new Error("session ended: log in again"); }
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || body.error || `HTTP ${response.status}`);
  return body;
}

// The login expired or was ended (logout, a revoked key): stop polling, show the login page.
function sessionEnded() {
  if (loggedOut) return;
  loggedOut = true;
  clearTimeout(timer);
  window.location.assign("/login?expired");
}

function notice(id, panel) {
  const el = $(id);
  const show = panel.state !== "ok" && panel.message;
  el.textContent = show ? panel.message : "";
  el.classList.toggle("show", Boolean(show));
  el.classList.toggle("error", panel.state === "error");
}

function draw(id, panel) {
  const el = $(id);
  el.dataset.state = panel.state;
  // Without data the panel's notice says why and what to run: no empty axes.
  if (panel.state !== "ok" || !panel.figure) { Plotly.purge(el); el.style.display = "none"; return; }
  el.style.display = "";
  const layout = { ...panel.figure.layout, autosize: true, height: el.clientHeight || undefined };
  layout.uirevision = id + view.stream + view.since + view.key + view.metric; // keep zoom across refreshes
  Plotly.react(el, panel.figure.data, layout, PLOT_CONFIG);
}

function fillSelect(select, options, selected) {
  const wanted = options.map((o) => o.value).join("\u0000");
  if (select.dataset.options !== wanted) {
    select.replaceChildren(...options.map((o) => new Option(o.label, o.value)));
    select.dataset.options = wanted;
  }
  select.value = selected;
}

function rows(tbody, records, cells) {
  tbody.replaceChildren(...records.map((record) => {
    const tr = document.createElement("tr");
    for (const [text, numeric] of cells(record)) {
      const td = document.createElement("td");
      td.textContent = text;
      if (numeric) td.className = "num";
      tr.appendChild(td);
    }
    return tr;
  }));
}

async function overview() {
  const panel = await get("overview", { since: view.since });
  $("overview").dataset.state = panel.state;
  notice("overview-notice", panel);
  const k = panel.kpis || {};
  $("kpi-in").textContent = fmt(k.in_eps);
  $("kpi-processed").textContent = fmt(k.processed_eps);
  $("kpi-lag").textContent = seconds(k.lag_p95_s);
  $("kpi-pipeline").textContent = seconds(k.pipeline_p95_s);
  $("kpi-rejected").textContent = percent(k.rejected_rate);
  $("kpi-entities").textContent = k.entities === undefined ? "–" : String(k.entities);
  $("overview").dataset.received = k.received || 0;
  draw("overview-chart", panel);
}

async function lag() {
  const panel = await get("lag");
  $("kpi-kafka-lag").textContent = panel.state === "ok" ? panel.lag_records.toLocaleString("en") : "n/a";
  $("kpi-kafka-lag").title = panel.message || "records of <stream>.events not yet committed by the job";
}

function pickSeries(series) {
  const keys = [...new Set(series.map((s) => s.key))];
  if (!keys.includes(view.key)) {
    const flagged = series.filter((s) => s.flags > 0).sort((a, b) => b.flags - a.flags);
    view.key = flagged.length ? flagged[0].key : (keys[0] || "");
  }
  const metrics = series.filter((s) => s.key === view.key).map((s) => s.metric);
  if (!metrics.includes(view.metric)) {
    const ofKey = series.filter((s) => s.key === view.key);
    const plain = ofKey.filter((s) => s.metric !== "events" && !s.metric.endsWith(".log_stddev"));
    const best = (plain.length ? plain : ofKey).sort((a, b) => b.flags - a.flags)[0];
    view.metric = best ? best.metric : "";
  }
  fillSelect($("entity-key"), keys.map((k) => ({ value: k, label: k })), view.key);
  fillSelect($("entity-metric"), metrics.map((m) => ({ value: m, label: m })), view.metric);
}

async function entity() {
  const series = await get("series", { since: view.since });
  if (series.state === "ok") pickSeries(series.series);
  else { view.key = ""; view.metric = ""; pickSeries([]); }
  const panel = series.state === "ok"
    ? await get("entity", { since: view.since, key: view.key, metric: view.metric })
    : series;
  $("entity").dataset.state = panel.state;
  notice("entity-notice", panel);
  const chart = $("entity-chart");
  chart.dataset.points = panel.points || 0;
  chart.dataset.flags = panel.flags || 0;
  chart.dataset.lastWindow = panel.last_window || "";
  draw("entity-chart", panel);
}

async function alerts() {
  const panel = await get("alerts", { since: view.since });
  $("alerts").dataset.state = panel.state;
  notice("alerts-notice", panel);
  rows($("alerts-table").tBodies[0], panel.alerts || [], (a) => [
    [when(a.window_start)], [a.key], [a.metric], [fmt(a.value, 2), true], [fmt(a.score, 3), true],
  ]);
  const feed = $("alertmanager");
  const recorded = panel.alertmanager || [];
  feed.replaceChildren(...(recorded.length ? recorded : [null]).map((a) => {
    const li = document.createElement("li");
    if (!a) { li.textContent = "no alert received (pulsecast up --with prometheus records them)"; return li; }
    li.textContent = `${when(a.received_at)} ${a.status} ${a.alertname} ${a.severity} ${a.summary}`;
    li.className = a.status;
    return li;
  }));
}

async function models() {
  const panel = await get("models", { since: view.since });
  const registry = panel.registry || {};
  $("models").dataset.state = panel.state;
  const champions = registry.champions || {};
  $("champion-forecaster").textContent = champions.forecaster ? "v" + champions.forecaster : "none";
  $("champion-detector").textContent = champions.detector ? "v" + champions.detector : "none";
  notice("models-registry-notice", registry);
  rows($("versions-table").tBodies[0], registry.versions || [], (v) => [
    [v.kind + (v.champion ? " ★" : "")], ["v" + v.version, true], [when(v.created)],
    [fmt(v.holdout_mae, 3), true], [v.trigger || ""],
  ]);
  $("versions-table").style.display = (registry.versions || []).length ? "" : "none";
  notice("models-notice", panel);
  draw("models-chart", panel);
}

async function quality() {
  const panel = await get("quality", { since: view.since });
  $("quality").dataset.state = panel.state;
  notice("quality-notice", panel);
  draw("quality-chart", panel);
  const fresh = panel.freshness || { state: "error", message: "no freshness" };
  notice("freshness-notice", fresh);
  draw("freshness-chart", fresh);
}

async function refresh() {
  clearTimeout(timer);
  const started = performance.now();
  const results = await Promise.allSettled([overview(), lag(), entity(), alerts(), models(), quality()]);
  if (loggedOut) return;
  const failed = results.filter((r) => r.status === "rejected");
  const status = $("status");
  const stamp = new Date().toISOString().slice(11, 19);
  if (failed.length) {
    status.textContent = `${stamp} UTC: ${failed[0].reason.message || failed[0].reason} (is the dashboard still running?)`;
    status.classList.add("error");
  } else {
    status.textContent = `updated ${stamp} UTC (${Math.round(performance.now() - started)} ms)`;
    status.classList.remove("error");
  }
  document.body.dataset.refreshes = Number(document.body.dataset.refreshes || 0) + 1;
  timer = setTimeout(refresh, CONFIG.refresh_s * 1000);
}

function init() {
  fillSelect($("stream"), CONFIG.streams.map((s) => ({ value: s, label: s })), view.stream);
  fillSelect($("since"), Object.entries(CONFIG.ranges).map(([v, l]) => ({ value: v, label: l })), view.since);
  $("refresh").textContent = CONFIG.refresh_s;
  $("stream").addEventListener("change", (e) => { view.stream = e.target.value; view.key = ""; refresh(); });
  $("since").addEventListener("change", (e) => { view.since = e.target.value; refresh(); });
  $("entity-key").addEventListener("change", (e) => { view.key = e.target.value; view.metric = ""; refresh(); });
  $("entity-metric").addEventListener("change", (e) => { view.metric = e.target.value; refresh(); });
  refresh();
}

init();
