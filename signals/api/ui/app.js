// The dashboard: one page over the service's own routes (no build step, no CDN).
// Grid: POST /batch and /models. Pair: GET /api/candles, POST /history and /summary. Track record: POST /scorecard.
// Health: POST /status. Live: EventSource on /api/stream (one event per newly recorded signal).
"use strict";

const TIMEFRAMES = ["15m", "1h", "4h", "1d"];
const COLORS = { LONG: "#1fa971", SHORT: "#e0525b", NO_TRADE: "#5c6878", accent: "#4c9aff", warn: "#e6a23c" };
const OUTCOME_COLORS = { target: "#1fa971", stop: "#e0525b", expired: "#8593a3", pending: "#4c9aff" };

const state = {
  timeframe: new URLSearchParams(location.search).get("timeframe") || "1h",
  symbol: new URLSearchParams(location.search).get("symbol") || null,
  signals: new Map(), // symbol -> Signal of the current timeframe
  live: new Map(), // "symbol|timeframe" -> the model's live block from /models
  stream: null,
  chart: null,
  candles: null,
  markers: null,
  priceLines: [],
};

const $ = (id) => document.getElementById(id);
const pct = (x, digits = 0) => (x === null || x === undefined || Number.isNaN(x) ? "–" : `${(100 * x).toFixed(digits)} %`);
const num = (x) => (x === null || x === undefined ? "–" : Number(x).toPrecision(6).replace(/\.?0+$/, ""));
const seconds = (iso) => Math.floor(Date.parse(iso) / 1000);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
};

// A server with SIGNALS_API_KEYS set answers 401: ask for a key once, keep it in this browser only.
const KEY_STORE = "signals-api-key";
const apiKey = () => localStorage.getItem(KEY_STORE);
const withKey = (headers = {}) => (apiKey() ? { ...headers, Authorization: `Bearer ${apiKey()}` } : headers);

async function call(route, options, retried = false) {
  const response = await fetch(route, { ...options, headers: withKey(options.headers) });
  if (response.status === 401 && !retried) {
    const key = window.prompt("This server needs an API key (it stays in this browser):");
    if (key) { localStorage.setItem(KEY_STORE, key.trim()); return call(route, options, true); }
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new Error(errorText(data) || `${route}: HTTP ${response.status}`);
  return data;
}

const post = (route, body = {}) =>
  call(route, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
const get = (route) => call(route, {});

function errorText(data) {
  if (!data) return null;
  if (Array.isArray(data)) return data.map((e) => e.error).join("; ");
  return data.detail || data.error || null;
}

// --- timeframe switch --------------------------------------------------------------------------------------------
function renderTimeframes() {
  const nav = $("timeframes");
  nav.replaceChildren(...TIMEFRAMES.map((tf) => el("button", {
    type: "button", "aria-pressed": String(tf === state.timeframe), dataset: { timeframe: tf },
    onclick: () => chooseTimeframe(tf),
  }, tf)));
}

function chooseTimeframe(tf) {
  state.timeframe = tf;
  renderTimeframes();
  rememberView();
  loadGrid();
  loadScorecard();
  connectStream();
}

function rememberView() {
  const params = new URLSearchParams({ timeframe: state.timeframe });
  if (state.symbol) params.set("symbol", state.symbol);
  history.replaceState(null, "", `?${params}`);
}

// --- the universe grid -------------------------------------------------------------------------------------------
async function loadGrid() {
  $("grid-caption").textContent = `${state.timeframe} · loading`;
  try {
    const [batch, models] = await Promise.all([post("/batch", { timeframe: state.timeframe }), post("/models")]);
    state.live = new Map(models.filter((m) => m.family === "cnn-lstm").map((m) => [`${m.symbol}|${m.timeframe}`, m]));
    state.signals = new Map(batch.signals.map((s) => [s.symbol, s]));
    const notice = $("grid-notice");
    notice.hidden = batch.errors.length === 0;
    notice.textContent = batch.errors.map((e) => `${e.symbol}: ${e.message}`).join(" · ");
    $("grid").replaceChildren(...batch.signals.map(card));
    const actionable = batch.signals.filter((s) => s.actionable).length;
    $("grid-caption").textContent = `${state.timeframe} · ${batch.signals.length} pairs · ${actionable} actionable`;
    if (batch.signals.length) $("source").textContent = batch.signals[0].data_source;
    $("planted-note").hidden = !batch.signals.some((s) => s.data_source === "synthetic");
    const keep = state.symbol && state.signals.has(state.symbol) ? state.symbol : null;
    if (keep || batch.signals.length) selectPair(keep || batch.signals[0].symbol);
  } catch (error) {
    $("grid-caption").textContent = state.timeframe;
    const notice = $("grid-notice");
    notice.hidden = false;
    notice.textContent = String(error.message || error);
  }
}

function shownDirection(signal) {
  return signal.actionable ? signal.direction : "NO_TRADE";
}

function card(signal) {
  const model = state.live.get(`${signal.symbol}|${signal.timeframe}`);
  const live = model && model.metrics && model.metrics.live;
  // Mode "live" only (backfill and shadow records are counted apart, in metrics.by_mode).
  const paper = live && live.paper_calls ? `, ${live.paper_calls} paper calls` : "";
  const hit = live && live.resolved
    ? `live signals: hit ${pct(live.hit_rate)} of ${live.resolved} resolved${paper}`
    : "no resolved live signals yet";
  const why = signal.actionable
    ? `plan: entry ${num(signal.levels.entry)} stop ${num(signal.levels.stop_loss)}`
    : /^(on probation|demoted)/.test(signal.abstain_reason || "")
      ? `paper call, no plan: ${signal.abstain_reason}`
      : `no edge: ${signal.abstain_reason || "not actionable"}`;
  const node = el("article", {
    class: "card", tabindex: "0", title: why,
    dataset: {
      symbol: signal.symbol, timeframe: signal.timeframe, direction: shownDirection(signal),
      modelDirection: signal.direction, candleTime: signal.candle_time, actionable: String(signal.actionable),
    },
    onclick: () => selectPair(signal.symbol),
    onkeydown: (event) => { if (event.key === "Enter") selectPair(signal.symbol); },
  },
  el("div", { class: "row" }, el("span", { class: "symbol" }, signal.symbol), el("span", { class: "dir" }, signal.actionable ? signal.direction : "no plan")),
  el("div", { class: "conf", title: `confidence ${pct(signal.confidence, 1)}` }, el("i", { style: `width:${(100 * signal.confidence).toFixed(1)}%` })),
  el("div", { class: "row muted" }, el("span", {}, `model ${signal.direction} ${pct(signal.confidence)}`), el("span", {}, num(signal.current_price))),
  el("div", { class: "why" }, why),
  el("div", { class: "muted" }, hit));
  if (signal.stale) node.append(el("div", { class: "stale" }, "stale: the next candle is late"));
  return node;
}

function updateCard(signal) {
  if (signal.timeframe !== state.timeframe) return;
  state.signals.set(signal.symbol, signal);
  const fresh = card(signal);
  const old = document.querySelector(`.card[data-symbol="${CSS.escape(signal.symbol)}"]`);
  if (old) old.replaceWith(fresh); else $("grid").append(fresh);
  fresh.classList.add("updated");
  markSelected();
  if (signal.symbol === state.symbol) selectPair(signal.symbol);
}

function markSelected() {
  for (const node of document.querySelectorAll(".card")) node.classList.toggle("selected", node.dataset.symbol === state.symbol);
}

// --- one pair ----------------------------------------------------------------------------------------------------
function ensureChart() {
  if (state.chart || !window.LightweightCharts) return;
  const LC = window.LightweightCharts;
  state.chart = LC.createChart($("chart"), {
    autoSize: true,
    layout: { background: { color: "#131a21" }, textColor: "#8593a3", attributionLogo: true },
    grid: { vertLines: { color: "#1d2630" }, horzLines: { color: "#1d2630" } },
    timeScale: { timeVisible: true, secondsVisible: false },
    rightPriceScale: { borderColor: "#263040" },
  });
  state.candles = state.chart.addSeries(LC.CandlestickSeries, {
    upColor: COLORS.LONG, downColor: COLORS.SHORT, wickUpColor: COLORS.LONG, wickDownColor: COLORS.SHORT, borderVisible: false,
  });
  state.markers = LC.createSeriesMarkers(state.candles, []);
}

async function selectPair(symbol) {
  state.symbol = symbol;
  rememberView();
  markSelected();
  const tf = state.timeframe;
  $("pair-title").textContent = `${symbol} · ${tf}`;
  ensureChart();
  const path = encodeURIComponent(symbol.replace("/", ""));
  const [candles, historyAnswer, summary] = await Promise.allSettled([
    get(`/api/candles/${path}?timeframe=${tf}&limit=300`),
    post("/history", { symbol, timeframe: tf, limit: 200 }),
    post("/summary", { symbol }),
  ]);
  if (symbol !== state.symbol || tf !== state.timeframe) return; // the user moved on meanwhile
  if (candles.status === "fulfilled" && state.candles) {
    state.candles.setData(candles.value.candles);
    $("pair-caption").textContent = `${candles.value.candles.length} closed candles · ${candles.value.data_source}`;
  } else if (candles.status === "rejected") {
    $("pair-caption").textContent = String(candles.reason.message || candles.reason);
  }
  drawLevels(state.signals.get(symbol));
  drawHistory(historyAnswer.status === "fulfilled" ? historyAnswer.value.items : []);
  renderFacts(state.signals.get(symbol));
  renderSummary(summary.status === "fulfilled" ? summary.value : null, summary.reason);
}

function drawLevels(signal) {
  if (!state.candles) return;
  for (const line of state.priceLines) state.candles.removePriceLine(line);
  state.priceLines = [];
  if (!signal || !signal.actionable || !signal.levels) return;
  const lines = [
    { price: signal.levels.entry, color: COLORS.accent, title: "entry" },
    { price: signal.levels.stop_loss, color: COLORS.SHORT, title: "stop" },
    ...signal.levels.take_profits.map((tp) => ({ price: tp.price, color: COLORS.LONG, title: `TP${tp.level}` })),
  ];
  state.priceLines = lines.map((line) => state.candles.createPriceLine({ ...line, lineWidth: 1, lineStyle: 2, axisLabelVisible: true }));
}

function outcomeOf(item) {
  if (!item.outcome) return "pending";
  const called = item.signal.direction;
  if (item.outcome.label === "NO_TRADE") return "expired";
  return item.outcome.label === called ? "target" : called === "NO_TRADE" ? "expired" : "stop";
}

function drawHistory(items) {
  if (!state.markers) return;
  const markers = items
    .filter((item) => item.signal.direction !== "NO_TRADE")
    .map((item) => {
      const outcome = outcomeOf(item);
      const long = item.signal.direction === "LONG";
      return {
        time: seconds(item.signal.candle_time),
        position: long ? "belowBar" : "aboveBar",
        shape: long ? "arrowUp" : "arrowDown",
        color: OUTCOME_COLORS[outcome],
        text: item.signal.actionable ? outcome : "",
      };
    })
    .sort((a, b) => a.time - b.time);
  state.markers.setMarkers(markers);
}

function renderFacts(signal) {
  const facts = $("pair-facts");
  if (!signal) { facts.replaceChildren(); return; }
  const edge = signal.edge;
  const rows = [
    ["model says", `${signal.direction} ${pct(signal.confidence, 1)}`],
    ["family", signal.family || "–"],
    ["served as", signal.actionable ? `${signal.direction} (actionable)` : "no trade plan"],
    ["edge", `${edge.verdict}${edge.value !== null && edge.value !== undefined ? ` ${(100 * edge.value).toFixed(2)} %/call` : ""}`],
    ["walk-forward acc.", `${pct(signal.model_accuracy, 1)}${signal.model_accuracy_ci ? ` [${pct(signal.model_accuracy_ci[0], 1)}, ${pct(signal.model_accuracy_ci[1], 1)}]` : ""} vs ${pct(signal.baseline_accuracy, 1)} majority`],
    ["break-even hit rate", pct(signal.break_even_hit_rate, 1)],
    ["candle", signal.candle_time.replace("T", " ").replace(":00Z", "Z")],
    ["horizon ends", signal.expires_at ? signal.expires_at.replace("T", " ").replace(":00Z", "Z") : "–"],
    ["stale", signal.stale ? "yes" : "no"],
  ];
  if (!signal.actionable) rows.push(["why no plan", signal.abstain_reason || "–"]);
  facts.replaceChildren(...rows.map(([label, value]) => el("div", label === "why no plan" ? { class: "wide" } : {}, el("span", {}, label), value)));
}

function renderSummary(summary, reason) {
  const table = $("summary");
  if (!summary) {
    table.replaceChildren(el("tr", {}, el("td", {}, String((reason && reason.message) || "no summary"))));
    $("consensus").textContent = "";
    return;
  }
  const head = el("tr", {}, ...["tf", "model", "conf.", "served", "edge", "stale"].map((h) => el("th", {}, h)));
  const rows = TIMEFRAMES.map((tf) => {
    const s = summary.signals[tf];
    const error = summary.errors.find((e) => e.timeframe === tf);
    if (!s) return el("tr", {}, el("td", {}, tf), el("td", { colspan: "5", class: "muted" }, error ? error.message : "–"));
    return el("tr", { dataset: { timeframe: tf } }, el("td", {}, tf), el("td", {}, s.direction), el("td", {}, pct(s.confidence)),
      el("td", {}, s.actionable ? s.direction : "no plan"), el("td", {}, s.edge.verdict), el("td", {}, s.stale ? "yes" : "no"));
  });
  table.replaceChildren(head, ...rows);
  const c = summary.consensus;
  $("consensus").textContent = c
    ? `Consensus ${c.direction} (score ${c.score.toFixed(2)}, ${c.actionable} actionable of ${c.answered}). ${c.rule}`
    : "No consensus: no timeframe answered.";
}

// --- the track record --------------------------------------------------------------------------------------------
async function loadScorecard() {
  const tf = state.timeframe;
  let card;
  try {
    card = await post("/scorecard", { timeframe: tf });
  } catch (error) {
    $("scorecard-verdict").textContent = String(error.message || error);
    return;
  }
  if (tf !== state.timeframe) return;
  $("scorecard-caption").textContent = `${tf} · ${card.n} resolved (${(card.modes || []).join(", ") || "none"})`;
  drawReliability(card.reliability || []);
  drawCoverage(card.coverage || []);
  drawBars(card);
  const calls = card.calls || {};
  $("scorecard-verdict").textContent = card.n
    ? `Verdict: ${card.verdict}. Actionable calls: ${calls.n || 0}${calls.n ? `, hit ${pct(calls.hit_rate.value, 1)} vs break-even ${pct(calls.break_even_hit_rate, 1)}` : ""}.`
    : `Verdict: ${card.verdict}${card.reason ? ` (${card.reason})` : ""}.`;
}

function svgNode(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function axes(svg, xLabel, yLabel) {
  svg.replaceChildren(
    svgNode("line", { x1: 30, y1: 190, x2: 210, y2: 190, stroke: "#394657" }),
    svgNode("line", { x1: 30, y1: 10, x2: 30, y2: 190, stroke: "#394657" }),
  );
  const x = svgNode("text", { x: 120, y: 210, "text-anchor": "middle" }); x.textContent = xLabel;
  const y = svgNode("text", { x: 8, y: 100, transform: "rotate(-90 8 100)", "text-anchor": "middle" }); y.textContent = yLabel;
  svg.append(x, y);
  const sx = (v) => 30 + 180 * v, sy = (v) => 190 - 180 * v;
  return [sx, sy];
}

function drawReliability(bins) {
  const svg = $("reliability");
  const [sx, sy] = axes(svg, "confidence", "right");
  svg.append(svgNode("line", { x1: sx(0), y1: sy(0), x2: sx(1), y2: sy(1), stroke: "#394657", "stroke-dasharray": "3 3" }));
  const total = bins.reduce((sum, b) => sum + b.n, 0) || 1;
  for (const b of bins) {
    if (!b.n) continue;
    svg.append(svgNode("circle", {
      cx: sx(b.confidence), cy: sy(b.accuracy), r: 2 + 6 * Math.sqrt(b.n / total), fill: COLORS.accent, "fill-opacity": 0.8,
      "data-n": b.n,
    }));
  }
}

function drawCoverage(points) {
  const svg = $("coverage");
  const [sx, sy] = axes(svg, "share of signals (most confident first)", "right");
  const sorted = [...points].filter((p) => p.hit_rate !== null).sort((a, b) => a.coverage - b.coverage);
  if (sorted.length) {
    const d = sorted.map((p, i) => `${i ? "L" : "M"}${sx(p.coverage).toFixed(1)},${sy(p.hit_rate).toFixed(1)}`).join(" ");
    svg.append(svgNode("path", { d, fill: "none", stroke: COLORS.accent, "stroke-width": 2 }));
  }
}

function drawBars(card) {
  const base = card.baselines || {};
  const calls = card.calls || {};
  const rows = [
    ["model", card.accuracy && card.accuracy.value],
    ["majority", base.majority],
    ["reversal", base.reversal && base.reversal.value],
    ["persistence", base.persistence && base.persistence.value],
    ["calls' hits", calls.n ? calls.hit_rate.value : null, calls.break_even_hit_rate],
  ];
  $("bars").replaceChildren(...rows.map(([label, value, mark]) => el("div", { class: "b" },
    el("span", {}, label),
    el("span", { class: "track" }, el("i", { style: `width:${value ? (100 * value).toFixed(1) : 0}%` }),
      ...(mark ? [el("b", { style: `left:${(100 * mark).toFixed(1)}%`, title: `break-even ${pct(mark, 1)}` })] : [])),
    el("span", {}, pct(value)))));
}

// --- health ------------------------------------------------------------------------------------------------------
async function loadHealth() {
  let status;
  try {
    status = await post("/status");
  } catch (error) {
    $("health").replaceChildren(el("dt", {}, "server"), el("dd", { class: "bad" }, String(error.message || error)));
    return;
  }
  const runner = (name, r) => {
    if (r.error) return [name, r.error, "bad"];
    const failed = Object.keys(r.failed || {}).length;
    return [name, `${Object.keys(r.loaded || {}).length} models on ${r.device}${failed ? `, ${failed} refused` : ""}`, failed ? "warn" : "ok"];
  };
  const scheduler = status.scheduler;
  const lags = scheduler ? Object.entries(scheduler.last || {}).map(([tf, r]) => `${tf} ${r.lag_seconds.toFixed(1)} s`).join(", ") : "";
  const rows = [
    runner("CNN-LSTM runner", status.cnn_lstm),
    runner("PPO runner", status.ppo),
    ["ledger", `${status.ledger.status}${status.ledger.error ? `: ${status.ledger.error}` : ""}`, status.ledger.status === "ok" ? "ok" : "bad"],
    ["candle-close loop", scheduler ? `${scheduler.running ? "running" : "stopped"}; next ${scheduler.next_refresh.slice(11, 16)} UTC${scheduler.last_error ? `; ${scheduler.last_error}` : ""}` : "off", scheduler && !scheduler.last_error ? "ok" : "warn"],
    ["scheduler lag", lags || "–", ""],
    ["push stream", status.push ? `${status.push.subscribers} subscribers${status.push.last_error ? `; ${status.push.last_error}` : ""}` : "off", status.push && !status.push.last_error ? "ok" : "warn"],
    ["served versions", `${Object.keys(status.versions.served).length} served, ${Object.keys(status.versions.shadow).length} in shadow`, ""],
  ];
  $("health").replaceChildren(...rows.flatMap(([label, value, cls]) => [el("dt", {}, label), el("dd", { class: cls }, value)]));
  $("health-time").textContent = `as of ${new Date().toISOString().slice(11, 19)} UTC`;
}

// --- live updates ------------------------------------------------------------------------------------------------
function connectStream() {
  if (state.stream) state.stream.close();
  const pill = $("stream-status");
  pill.dataset.state = "connecting";
  pill.textContent = "connecting";
  const key = apiKey() ? `&api_key=${encodeURIComponent(apiKey())}` : "";  // EventSource cannot send headers
  const stream = new EventSource(`/api/stream?timeframes=${state.timeframe}&kinds=signal${key}`);
  stream.onopen = () => { pill.dataset.state = "live"; pill.textContent = "live"; };
  stream.onerror = () => { pill.dataset.state = "reconnecting"; pill.textContent = "reconnecting"; };
  stream.addEventListener("signal", (message) => updateCard(JSON.parse(message.data)));
  state.stream = stream;
}

function start() {
  renderTimeframes();
  loadGrid();
  loadScorecard();
  loadHealth();
  connectStream();
  setInterval(loadHealth, 15000);
  setInterval(loadScorecard, 60000);
}

start();
