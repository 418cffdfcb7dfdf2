// The dashboard: one page over the service's own routes (no build step, no CDN).
// Grid: POST /batch and /models. Pair: GET /api/candles, POST /history and /summary. Track record: POST /scorecard.
// Health: POST /status. Live: EventSource on /api/stream (one event per newly recorded signal).
// Equity: GET /equity. Downloads: GET /export/history.csv and /export/scorecard.csv. Alerts: GET/POST /admin/alerts.
"use strict";

const TIMEFRAMES = ["15m", "1h", "4h", "1d"];
const COLORS = { LONG: "#1fa971", SHORT: "#e0525b", NO_TRADE: "#5c6878", accent: "#4c9aff", warn: "#e6a23c" };
// Past calls on the chart: the colour says the direction (as the legend above), the shape says what happened.
// A direction in words for people (NO_TRADE reads "no trade"); data attributes keep the API's value.
const directionWords = (direction) => (direction === "NO_TRADE" ? "no trade" : direction);
const OUTCOME_SHAPES = { target: "circle", stop: "square" }; // expired and open: an arrow in the call's direction
const OUTCOME_WORDS = { target: "hit", stop: "stop", expired: "exp", pending: "" };
const VERDICT_WORDS = {
  insufficient_data: "not enough data yet", none: "no edge shown", no_evidence: "no evidence either way",
  positive: "positive", negative: "negative",
};

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
  allCalls: false,
  equityCalls: "served",
  equityChart: null,
  equitySeries: null,
  marketDegraded: false,
  streamState: "connecting",
};

const $ = (id) => document.getElementById(id);
const NBSP = "\u00a0"; // "33 %" never wraps between the number and its unit
const pct = (x, digits = 0) => (x === null || x === undefined || Number.isNaN(x) ? "–" : `${(100 * x).toFixed(digits)}${NBSP}%`);
const signedPct = (x, digits = 1) => (x === null || x === undefined ? "–" : `${x > 0 ? "+" : ""}${pct(x, digits)}`);
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
const verdictWords = (v) => VERDICT_WORDS[v] || String(v || "–").replaceAll("_", " ");
// Seconds as a person says them: "45 s", "3 min", "4 h 12 min", "2 d 5 h".
function duration(totalSeconds) {
  if (totalSeconds === null || totalSeconds === undefined || Number.isNaN(totalSeconds)) return "–";
  const s = Math.max(0, Math.round(totalSeconds));
  if (s < 90) return `${s}${NBSP}s`;
  const minutes = Math.round(s / 60);
  if (minutes < 90) return `${minutes}${NBSP}min`;
  const h = Math.floor(minutes / 60), m = minutes % 60;
  if (h < 48) return m ? `${h}${NBSP}h ${m}${NBSP}min` : `${h}${NBSP}h`;
  const d = Math.floor(h / 24), rest = h % 24;
  return rest ? `${d}${NBSP}d ${rest}${NBSP}h` : `${d}${NBSP}d`;
}
const withKeyParam = (url) => (apiKey() ? `${url}&api_key=${encodeURIComponent(apiKey())}` : url);
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
  if (!response.ok) {
    const error = new Error(errorText(data) || `${route}: HTTP ${response.status}`);
    error.status = response.status;
    error.items = data && Array.isArray(data.errors) ? data.errors.filter((e) => e && e.message) : [];
    throw error;
  }
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
  loadEquity();
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
    notice.replaceChildren(...groupedErrors(batch.errors));
    if (batch.errors.length) loadHealth(); // a pair failed: health says whether the market is the cause
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
    notice.replaceChildren(...groupedErrors(errorItems(error)));
    loadHealth();
  }
}

// One line per cause, not one per pair: a message with its pair's name taken out, then the pairs it hit.
function groupedErrors(errors) {
  const groups = new Map();
  for (const e of errors) {
    const names = e.symbol ? [e.symbol, e.symbol.replace("/", ""), e.symbol.replace("/", "-")] : [];
    const cause = names.reduce((text, name) => text.split(name).join("the pair"), e.message);
    if (!groups.has(cause)) groups.set(cause, []);
    if (e.symbol) groups.get(cause).push(e.symbol);
  }
  return [...groups].map(([cause, pairs]) =>
    el("span", { class: "group" }, pairs.length ? `${pairs.join(", ")}: ${cause}` : cause));
}

// A failed /batch answers one error whose `errors` list the pairs (or just a message).
function errorItems(error) {
  const items = error.items || [];
  return items.length ? items : [{ symbol: null, message: String(error.message || error) }];
}

function isPaper(signal) {
  return !signal.actionable && /^(on probation|demoted)/.test(signal.abstain_reason || "");
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
  const reason = signal.abstain_reason || "not actionable";
  const why = signal.actionable
    ? `plan: entry ${num(signal.levels.entry)} stop ${num(signal.levels.stop_loss)}`
    : isPaper(signal) ? `paper call, no plan: ${reason}` : `no edge: ${reason}`;
  // The card shows the reason's first clause, whole and wrapped; the rest is in the title and the pair's facts.
  const short = signal.actionable ? why : why.split(/[:;(]/).slice(0, 2).join(":").trim();
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
  el("div", { class: "row muted" }, el("span", { class: "nowrap" }, `model ${directionWords(signal.direction)} ${pct(signal.confidence)}`), el("span", {}, num(signal.current_price))),
  el("div", { class: "why", title: why }, short),
  el("div", { class: "muted" }, hit));
  if (signal.stale) node.append(el("div", { class: "stale" }, "stale: the next candle is late"));
  if (signal.actionable && signal.plan_requires) node.append(el("div", { class: "requires" }, `needs ${signal.plan_requires}`));
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
    timeScale: { timeVisible: true, secondsVisible: false, rightOffset: 4 }, // room for the last time label
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
  $("history-csv").href = withKeyParam(`/export/history.csv?symbol=${encodeURIComponent(symbol)}&timeframe=${tf}`);
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
  state.historyItems = historyAnswer.status === "fulfilled" ? historyAnswer.value.items : [];
  drawHistory(state.historyItems);
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

// By default only the calls a trader saw as calls: actionable plans and probation's paper calls; the toggle adds
// every model direction that served no plan (these crowd the chart: most candles have one).
function drawHistory(items) {
  if (!state.markers) return;
  const directional = items.filter((item) => item.signal.direction !== "NO_TRADE");
  const calls = directional.filter((item) => item.signal.actionable || isPaper(item.signal));
  const shown = state.allCalls ? directional : calls;
  const markers = shown
    .map((item) => {
      const outcome = outcomeOf(item);
      const long = item.signal.direction === "LONG";
      const colour = outcome === "expired" ? "#8593a3" : long ? COLORS.LONG : COLORS.SHORT;
      return {
        time: seconds(item.signal.candle_time),
        position: long ? "belowBar" : "aboveBar",
        shape: OUTCOME_SHAPES[outcome] || (long ? "arrowUp" : "arrowDown"),
        color: item.signal.actionable || isPaper(item.signal) ? colour : `${colour}80`,
        text: item.signal.actionable ? OUTCOME_WORDS[outcome] : isPaper(item.signal) ? "paper" : "",
        id: `${outcome}|${item.signal.actionable ? "plan" : isPaper(item.signal) ? "paper" : "model"}`,
      };
    })
    .sort((a, b) => a.time - b.time);
  state.markers.setMarkers(markers);
  $("chart").dataset.markers = JSON.stringify(markers.map((m) => m.id));
  const hidden = directional.length - shown.length;
  $("marker-caption").textContent = `${plural(shown.length, "past call")} shown`
    + (hidden ? ` · ${hidden} model directions without a plan hidden` : "");
}

function renderFacts(signal) {
  const facts = $("pair-facts");
  if (!signal) { facts.replaceChildren(); return; }
  const edge = signal.edge;
  const rows = [
    ["model says", `${directionWords(signal.direction)} ${pct(signal.confidence, 1)}`],
    ["family", signal.family || "–"],
    ["served as", signal.actionable ? `${signal.direction} (actionable)` : "no trade plan"],
    ["edge", `${verdictWords(edge.verdict)}${edge.value !== null && edge.value !== undefined ? ` ${(100 * edge.value).toFixed(2)}${NBSP}%/call` : ""}`],
    ["walk-forward acc.", `${pct(signal.model_accuracy, 1)}${signal.model_accuracy_ci ? ` [${pct(signal.model_accuracy_ci[0], 1)}, ${pct(signal.model_accuracy_ci[1], 1)}]` : ""} vs ${pct(signal.baseline_accuracy, 1)} majority`],
    ["break-even hit rate", pct(signal.break_even_hit_rate, 1)],
    ["candle", signal.candle_time.replace("T", " ").replace(":00Z", "Z")],
    ["horizon ends", signal.expires_at ? signal.expires_at.replace("T", " ").replace(":00Z", "Z") : "–"],
    ["stale", signal.stale ? "yes" : "no"],
  ];
  if (!signal.actionable) rows.push(["why no plan", signal.abstain_reason || "–"]);
  if (signal.actionable && signal.plan_requires) rows.push(["plan needs", signal.plan_requires]);
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
    return el("tr", { dataset: { timeframe: tf } }, el("td", {}, tf), el("td", {}, directionWords(s.direction)), el("td", {}, pct(s.confidence)),
      el("td", {}, s.actionable ? s.direction : "no plan"), el("td", {}, verdictWords(s.edge.verdict)), el("td", {}, s.stale ? "yes" : "no"));
  });
  table.replaceChildren(head, ...rows);
  const c = summary.consensus;
  $("consensus").textContent = c
    ? `Consensus ${directionWords(c.direction)} (score ${c.score.toFixed(2)}, ${c.actionable} actionable of ${c.answered}). ${c.rule}`
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
  $("scorecard-caption").textContent = `${tf} · ${card.n} resolved${card.modes && card.modes.length ? ` (${card.modes.join(", ")})` : ""}`;
  $("scorecard-csv").href = withKeyParam(`/export/scorecard.csv?timeframe=${tf}`);
  drawReliability(card.reliability || []);
  drawCoverage(card.coverage || []);
  drawBars(card);
  const calls = card.calls || {};
  $("scorecard-verdict").textContent = card.n
    ? `Verdict: ${verdictWords(card.verdict)}. Actionable calls: ${calls.n || 0}${calls.n ? `, hit ${pct(calls.hit_rate.value, 1)} vs break-even ${pct(calls.break_even_hit_rate, 1)}` : ""}.`
    : `Verdict: ${verdictWords(card.verdict)}${card.reason ? ` (${card.reason})` : ""}.`;
}

function svgNode(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

// A 220 x 220 plot: axes with 0, 50 and 100 % ticks, text at 14 units (11 px and more as the plots are laid out).
function axes(svg, xLabel, yLabel) {
  const left = 48, right = 210, top = 10, bottom = 166;
  const sx = (v) => left + (right - left) * v, sy = (v) => bottom - (bottom - top) * v;
  svg.replaceChildren(
    svgNode("line", { x1: left, y1: bottom, x2: right, y2: bottom, stroke: "#394657" }),
    svgNode("line", { x1: left, y1: top, x2: left, y2: bottom, stroke: "#394657" }),
  );
  const text = (attrs, value) => { const node = svgNode("text", attrs); node.textContent = value; svg.append(node); };
  for (const v of [0, 0.5, 1]) {
    svg.append(svgNode("line", { x1: sx(v), y1: bottom, x2: sx(v), y2: bottom + 4, stroke: "#394657" }));
    svg.append(svgNode("line", { x1: left - 4, y1: sy(v), x2: left, y2: sy(v), stroke: "#394657" }));
    text({ x: sx(v), y: bottom + 18, "text-anchor": v === 0 ? "start" : v === 1 ? "end" : "middle", class: "tick" }, `${100 * v}%`);
    text({ x: left - 6, y: sy(v) + 5, "text-anchor": "end", class: "tick" }, `${100 * v}%`);
  }
  text({ x: (left + right) / 2, y: 214, "text-anchor": "middle" }, xLabel);
  text({ x: 14, y: (top + bottom) / 2, transform: `rotate(-90 14 ${(top + bottom) / 2})`, "text-anchor": "middle" }, yLabel);
  return [sx, sy];
}

function drawReliability(bins) {
  const svg = $("reliability");
  const [sx, sy] = axes(svg, "confidence", "how often right");
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
  const [sx, sy] = axes(svg, "most confident share", "hit rate");
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
    return [name, `${plural(Object.keys(r.loaded || {}).length, "model")} on ${r.device}${failed ? `, ${failed} refused` : ""}`, failed ? "warn" : "ok"];
  };
  const scheduler = status.scheduler;
  const lags = scheduler ? Object.entries(scheduler.last || {}).map(([tf, r]) => `${tf} ${duration(r.lag_seconds)}`).join(", ") : "";
  const served = Object.keys(status.versions.served).length, shadow = Object.keys(status.versions.shadow).length;
  const rows = [
    marketRow(status.market || {}),
    runner("CNN-LSTM runner", status.cnn_lstm),
    runner("PPO runner", status.ppo),
    ["ledger", `${status.ledger.status}${status.ledger.error ? `: ${status.ledger.error}` : ""}`, status.ledger.status === "ok" ? "ok" : "bad"],
    ["candle-close loop", scheduler ? `${scheduler.running ? "running" : "stopped"}; next ${scheduler.next_refresh.slice(11, 16)} UTC${scheduler.last_error ? `; ${scheduler.last_error}` : ""}` : "off", scheduler && !scheduler.last_error ? "ok" : "warn"],
    ["scheduler lag", lags || "–", ""],
    ["push stream", status.push ? `${plural(status.push.subscribers, "subscriber")}${status.push.last_error ? `; ${status.push.last_error}` : ""}` : "off", status.push && !status.push.last_error ? "ok" : "warn"],
    ["served versions", `${served} served, ${shadow} in shadow`, ""],
  ];
  $("health").replaceChildren(...rows.flatMap(([label, value, cls]) => [el("dt", {}, label), el("dd", { class: cls, dataset: { row: label } }, value)]));
  $("health-time").textContent = `as of ${new Date().toISOString().slice(11, 19)} UTC`;
  state.marketDegraded = Boolean(status.market && status.market.degraded);
  showPill();
}

// The market row: where candles come from, and whether the exchange (live) or the candle store is failing.
function marketRow(market) {
  const exchange = market.exchange;
  const source = `${market.source || "?"} (${market.data_source || "?"})`;
  if (exchange && exchange.degraded) {
    const wait = exchange.retry_in_s ? `; asked again in ${duration(exchange.retry_in_s)}` : "";
    const failures = `${plural(exchange.consecutive_failures, "failed fetch")} in a row`.replace("fetchs", "fetches");
    return ["market", `exchange failing: ${failures}${wait}${exchange.last_error ? ` (last: ${exchange.last_error})` : ""}`, "bad"];
  }
  if (market.store_error) return ["market", `${source}; the candle store is failing: ${market.store_error}`, "bad"];
  return ["market", exchange ? `${source}, exchange answering` : source, "ok"];
}

// --- live updates ------------------------------------------------------------------------------------------------
function connectStream() {
  if (state.stream) state.stream.close();
  state.streamState = "connecting";
  showPill();
  const key = apiKey() ? `&api_key=${encodeURIComponent(apiKey())}` : "";  // EventSource cannot send headers
  const stream = new EventSource(`/api/stream?timeframes=${state.timeframe}&kinds=signal${key}`);
  stream.onopen = () => { state.streamState = "live"; showPill(); };
  stream.onerror = () => { state.streamState = "reconnecting"; showPill(); };
  stream.addEventListener("signal", (message) => updateCard(JSON.parse(message.data)));
  state.stream = stream;
}

// "live" only when the stream is open and the market answers: an exchange outage is "degraded", whatever the stream.
function showPill() {
  const pill = $("stream-status");
  const shown = state.streamState === "live" && state.marketDegraded ? "degraded" : state.streamState;
  pill.dataset.state = shown;
  pill.textContent = shown === "degraded" ? "degraded: exchange failing" : shown;
}

// --- the equity curve --------------------------------------------------------------------------------------------
function ensureEquityChart() {
  if (state.equityChart || !window.LightweightCharts) return;
  const LC = window.LightweightCharts;
  state.equityChart = LC.createChart($("equity-chart"), {
    autoSize: true,
    layout: { background: { color: "#131a21" }, textColor: "#8593a3", fontSize: 12, attributionLogo: false },
    grid: { vertLines: { color: "#1d2630" }, horzLines: { color: "#1d2630" } },
    timeScale: { timeVisible: true, secondsVisible: false, rightOffset: 4 },
    localization: { priceFormatter: (v) => `${v.toFixed(1)}${NBSP}%` },
  });
  state.equitySeries = {
    equity: state.equityChart.addSeries(LC.LineSeries, { color: COLORS.accent, lineWidth: 2, title: "calls" }),
    hold: state.equityChart.addSeries(LC.LineSeries, { color: COLORS.warn, lineWidth: 1, title: "buy-and-hold" }),
  };
}

async function loadEquity() {
  const tf = state.timeframe, calls = state.equityCalls;
  for (const button of document.querySelectorAll("#equity-mode button")) button.setAttribute("aria-pressed", String(button.dataset.calls === calls));
  let curve;
  try {
    curve = await get(`/equity?timeframe=${tf}&calls=${calls}`);
  } catch (error) {
    $("equity-note").textContent = String(error.message || error);
    return;
  }
  if (tf !== state.timeframe || calls !== state.equityCalls) return;
  ensureEquityChart();
  const what = calls === "served" ? "served plan" : "paper call";
  $("equity-caption").textContent = `${tf} · ${plural(curve.calls, what)}`;
  $("equity-panel").dataset.calls = String(curve.calls);
  $("equity-panel").dataset.points = String(curve.points.length);
  if (state.equitySeries) {
    state.equitySeries.equity.setData(curve.points.map((p) => ({ time: p.time, value: 100 * p.equity })));
    state.equitySeries.hold.setData(curve.points.filter((p) => p.buy_and_hold !== null).map((p) => ({ time: p.time, value: 100 * p.buy_and_hold })));
    state.equityChart.timeScale().fitContent();
  }
  $("equity-note").textContent = curve.calls
    ? `${plural(curve.calls, what)}, ${curve.hits} in profit: ${signedPct(curve.total_return)} in all after costs `
      + `(${signedPct(curve.mean_return, 2)} a call) vs buy-and-hold ${signedPct(curve.buy_and_hold_return)} `
      + `(${curve.pairs.join(", ")}). ${curve.note}`
    : `No resolved ${what}s yet${curve.reason ? ` (${curve.reason})` : ""}.`;
}

// --- alert subscriptions (an admin key only: the panel stays hidden otherwise) -----------------------------------
async function loadAlerts() {
  let list;
  try {
    const response = await fetch("/admin/alerts", { headers: withKey() });
    if (!response.ok) { $("alerts-panel").hidden = true; return; }
    list = await response.json();
  } catch {
    $("alerts-panel").hidden = true;
    return;
  }
  $("alerts-panel").hidden = false;
  $("alerts-list").replaceChildren(...(list.length ? list.map((a) => el("li", { dataset: { id: a.id } },
    `${a.target} · ${a.filters.symbols && a.filters.symbols.length ? a.filters.symbols.join(", ") : "every pair"}`
    + ` · ${a.filters.timeframes && a.filters.timeframes.length ? a.filters.timeframes.join(", ") : "every timeframe"}`))
    : [el("li", { class: "muted" }, "no subscriptions yet")]));
}

async function addAlert(event) {
  event.preventDefault();
  const symbols = $("alert-symbols").value.split(/[,\s]+/).filter(Boolean);
  const body = { url: $("alert-url").value.trim(), ...(symbols.length ? { symbols } : {}) };
  try {
    const added = await call("/admin/alerts", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    $("alert-result").textContent = `Added. The receiver verifies X-Signals-Signature with this secret (shown once): ${added.secret}`;
    $("alert-form").reset();
    loadAlerts();
  } catch (error) {
    $("alert-result").textContent = String(error.message || error);
  }
}

function start() {
  renderTimeframes();
  $("all-calls").addEventListener("change", (event) => { state.allCalls = event.target.checked; drawHistory(state.historyItems || []); });
  for (const button of document.querySelectorAll("#equity-mode button")) {
    button.addEventListener("click", () => { state.equityCalls = button.dataset.calls; loadEquity(); });
  }
  $("alert-form").addEventListener("submit", addAlert);
  loadGrid();
  loadScorecard();
  loadEquity();
  loadHealth();
  loadAlerts();
  connectStream();
  setInterval(loadHealth, 15000);
  setInterval(loadScorecard, 60000);
  setInterval(loadEquity, 60000);
}

start();
