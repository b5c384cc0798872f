// liqmon page: live tables over the WebSocket, charts with uPlot (vendored), events.
// No build step: plain ES2017 in one file.
"use strict";

const API = "/api/v1";
const MAX_LIVE_POINTS = 20000; // per series, kept in the browser
const COLORS = ["#58a6ff", "#3fb950", "#d29922", "#f778ba", "#a371f7", "#39c5cf", "#f0883e",
  "#8b949e", "#ffa657", "#7ee787", "#ff7b72", "#d2a8ff"];

const state = {
  rows: [],            // latest tick rows
  assets: new Map(),   // asset -> latest asset summary (score, state, components)
  ts: null,            // latest tick (ms)
  asset: null,         // selected asset
  series: new Map(),   // "venue|symbol" -> {t: [], v: []} live 1% depth
  score: new Map(),    // asset -> {t: [], v: []} live asset score (max of its books)
  history: null,       // {asset, from, to, venues: Map(key -> {t, v}), score: {t, v}}
  events: [],
  depthPlot: null,
  bookPlot: null,
  ws: null,
  retry: 500,
  pendingDraw: false,
  info: null,          // GET /api/v1/info: {live, history}
};

const $ = (id) => document.getElementById(id);

function fmtUsd(x) {
  if (x === null || x === undefined) return "—";
  const a = Math.abs(x);
  if (a >= 1e9) return "$" + (x / 1e9).toFixed(2) + "B";
  if (a >= 1e6) return "$" + (x / 1e6).toFixed(2) + "M";
  if (a >= 1e3) return "$" + (x / 1e3).toFixed(1) + "k";
  return "$" + x.toFixed(0);
}
function fmtNum(x, d) { return x === null || x === undefined ? "—" : x.toFixed(d); }
function fmtBps(x) {
  if (x === null || x === undefined) return "—";
  const cls = x < -5 ? "neg" : x > 5 ? "pos" : "";
  return `<span class="${cls}">${x.toFixed(1)}</span>`;
}
function fmtTime(ms) { return new Date(ms).toISOString().slice(11, 19); }
function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// --- live table ---------------------------------------------------------------------------
function assetsOf(rows) {
  const out = new Map();
  for (const r of rows) {
    if (!out.has(r.asset)) out.set(r.asset, []);
    out.get(r.asset).push(r);
  }
  return out;
}

function renderTabs(assets) {
  const nav = $("asset-tabs");
  const names = [...assets.keys()].sort();
  if (state.asset === null || !assets.has(state.asset)) {
    state.asset = assets.has("SOL") ? "SOL" : names[0] || null;
    onAssetChange();
  }
  const want = names.join(",");
  if (nav.dataset.names !== want) {
    nav.dataset.names = want;
    nav.innerHTML = names.map((a) => `<button type="button" data-asset="${esc(a)}">${esc(a)}</button>`).join("");
  }
  for (const b of nav.querySelectorAll("button")) b.classList.toggle("sel", b.dataset.asset === state.asset);
}

function renderTables() {
  const assets = assetsOf(state.rows);
  renderTabs(assets);
  const names = [...assets.keys()].sort((a, b) => (a === state.asset ? -1 : b === state.asset ? 1 : a < b ? -1 : 1));
  const html = [];
  for (const asset of names) {
    const rows = assets.get(asset).slice().sort((a, b) => (b.depth_1pct_usd || 0) - (a.depth_1pct_usd || 0));
    const total = rows.reduce((s, r) => s + (r.valid && r.depth_1pct_usd ? r.depth_1pct_usd : 0), 0);
    const valid = rows.filter((r) => r.valid).length;
    const sum = state.assets.get(asset);
    let score = "";
    if (sum && sum.score !== null && sum.score !== undefined) {
      const parts = sum.components ? Object.entries(sum.components).filter(([, p]) => p >= 0.5)
        .sort((a, b) => b[1] - a[1]).map(([n, p]) => `${n} ${p.toFixed(0)}`).join(", ") : "";
      score = ` · score <b>${sum.score.toFixed(0)}</b> <span class="state state-${esc(sum.state)}">${esc(sum.state)}</span>` +
        (parts ? ` <span class="muted">(${esc(parts)})</span>` : "");
    } else if (sum) {
      score = ` · <span class="state state-${esc(sum.state)}">${esc(sum.state)}</span>`;
    }
    html.push(`<div class="card asset-table" data-asset="${esc(asset)}"><table><caption>${esc(asset)}
      <span class="muted">${fmtUsd(total)} within ±1% · ${valid}/${rows.length} books valid</span>${score}</caption>
      <thead><tr><th>venue</th><th>symbol</th><th>±1% depth</th><th>spread bp</th><th>disloc. bp</th>
      <th>basis bp</th><th>score</th><th>state</th></tr></thead><tbody>`);
    for (const r of rows) {
      const st = !r.valid ? r.state : r.score_state || r.state;
      html.push(`<tr class="${r.valid ? "" : "invalid"}"><td>${esc(r.venue)}</td><td>${esc(r.symbol)}</td>
        <td>${fmtUsd(r.depth_1pct_usd)}</td><td>${fmtNum(r.spread_bps, 2)}</td><td>${fmtBps(r.dislocation_bps)}</td>
        <td>${fmtBps(r.basis_bps)}</td><td>${fmtNum(r.score, 0)}</td>
        <td><span class="state state-${esc(st)}">${esc(st)}</span></td></tr>`);
    }
    html.push("</tbody></table></div>");
  }
  $("tables").innerHTML = html.join("");
  const live = state.rows.filter((r) => r.valid).length;
  $("summary").textContent = `${state.rows.length} books, ${live} valid`;
  if (state.ts) $("clock").textContent = new Date(state.ts).toISOString().replace("T", " ").slice(0, 19) + " UTC";
}

// --- live series ----------------------------------------------------------------------------
function push(map, key, t, v) {
  let s = map.get(key);
  if (!s) { s = { t: [], v: [] }; map.set(key, s); }
  if (s.t.length && s.t[s.t.length - 1] >= t) return;
  s.t.push(t); s.v.push(v);
  if (s.t.length > MAX_LIVE_POINTS) { s.t.splice(0, s.t.length - MAX_LIVE_POINTS); s.v.splice(0, s.v.length - MAX_LIVE_POINTS); }
}

function onTick(msg) {
  state.ts = msg.ts;
  // a tick carries the rows the filters select; merge them into the table
  const byKey = new Map(state.rows.map((r) => [r.venue + "|" + r.symbol, r]));
  for (const r of msg.rows) byKey.set(r.venue + "|" + r.symbol, r);
  state.rows = [...byKey.values()];
  for (const r of msg.rows) {
    push(state.series, r.asset + "|" + r.venue + "|" + r.symbol, msg.ts / 1000, r.valid ? r.depth_1pct_usd : null);
  }
  // the asset's own score (analytics); without it, the worst book's
  const scores = new Map();
  for (const a of msg.assets || []) {
    state.assets.set(a.asset, a);
    if (a.score !== null && a.score !== undefined) scores.set(a.asset, a.score);
  }
  for (const r of msg.rows) {
    if (!scores.has(r.asset) && r.score !== null && r.score !== undefined && !(msg.assets || []).length) {
      scores.set(r.asset, Math.max(scores.get(r.asset) || 0, r.score));
    }
  }
  for (const [a, v] of scores) push(state.score, a, msg.ts / 1000, v);
  renderTables();
  fillBookSelect();
  scheduleDraw();
}

function scheduleDraw() {
  if (state.pendingDraw) return;
  state.pendingDraw = true;
  requestAnimationFrame(() => { state.pendingDraw = false; drawDepth(); });
}

// --- depth chart ----------------------------------------------------------------------------
function windowMs() { return Number($("window").value); }

function depthData() {
  // one x axis: the union of every series' times (history buckets, then live ticks)
  const asset = state.asset;
  const from = (state.ts || Date.now()) / 1000 - windowMs() / 1000;
  const keys = [];
  const src = new Map();
  if (state.history && state.history.asset === asset) {
    for (const [k, s] of state.history.venues) src.set(k, { t: s.t.slice(), v: s.v.slice() });
  }
  for (const [k, s] of state.series) {
    if (!k.startsWith(asset + "|")) continue;
    const key = k.slice(asset.length + 1);
    const cur = src.get(key) || { t: [], v: [] };
    const last = cur.t.length ? cur.t[cur.t.length - 1] : -Infinity;
    for (let i = 0; i < s.t.length; i++) if (s.t[i] > last) { cur.t.push(s.t[i]); cur.v.push(s.v[i]); }
    src.set(key, cur);
  }
  const score = { t: [], v: [] };
  if (state.history && state.history.asset === asset) { score.t.push(...state.history.score.t); score.v.push(...state.history.score.v); }
  const ls = state.score.get(asset);
  if (ls) for (let i = 0; i < ls.t.length; i++) if (!score.t.length || ls.t[i] > score.t[score.t.length - 1]) { score.t.push(ls.t[i]); score.v.push(ls.v[i]); }
  const times = new Set();
  for (const s of src.values()) for (const t of s.t) if (t >= from) times.add(t);
  for (const t of score.t) if (t >= from) times.add(t);
  const xs = [...times].sort((a, b) => a - b);
  const index = new Map(xs.map((t, i) => [t, i]));
  const data = [xs];
  for (const [k, s] of [...src.entries()].sort()) {
    keys.push(k);
    const col = new Array(xs.length).fill(null);
    for (let i = 0; i < s.t.length; i++) { const j = index.get(s.t[i]); if (j !== undefined) col[j] = s.v[i]; }
    data.push(col);
  }
  const sc = new Array(xs.length).fill(null);
  for (let i = 0; i < score.t.length; i++) { const j = index.get(score.t[i]); if (j !== undefined) sc[j] = score.v[i]; }
  data.push(sc);
  return { keys, data };
}

function drawDepth() {
  if (!state.asset || typeof uPlot === "undefined") return;
  const { keys, data } = depthData();
  const el = $("depth-chart");
  const sig = state.asset + "|" + keys.join(",");
  if (!state.depthPlot || state.depthPlot._sig !== sig) {
    if (state.depthPlot) state.depthPlot.destroy();
    const series = [{}];
    keys.forEach((k, i) => series.push({ label: k.replace("|", " "), stroke: COLORS[i % COLORS.length], width: 1.5, scale: "usd", spanGaps: false,
      value: (u, v) => fmtUsd(v) }));
    series.push({ label: "score", stroke: "#f85149", width: 2, dash: [6, 4], scale: "score", value: (u, v) => fmtNum(v, 0) });
    const opts = {
      width: Math.max(300, el.clientWidth), height: 300,
      series,
      scales: { x: { time: true }, usd: { range: (u, lo, hi) => [0, (hi || 1) * 1.05] }, score: { range: [0, 100] } },
      axes: [
        { stroke: "#7d8896", grid: { stroke: "#263040" } },
        { scale: "usd", stroke: "#7d8896", grid: { stroke: "#263040" }, values: (u, vs) => vs.map(fmtUsd), size: 70 },
        { scale: "score", side: 1, stroke: "#f85149", grid: { show: false }, size: 40 },
      ],
      legend: { live: true },
    };
    state.depthPlot = new uPlot(opts, data, el);
    state.depthPlot._sig = sig;
  } else {
    state.depthPlot.setData(data);
  }
  $("depth-asset").textContent = state.asset;
}

async function loadHistory() {
  const asset = state.asset;
  if (!asset) return;
  if (!state.info || !state.info.history) {
    state.history = null;
    $("depth-source").textContent = "live ticks since the page opened (no database in this process)";
    scheduleDraw();
    return;
  }
  const to = Date.now();
  const from = to - windowMs();
  const interval = windowMs() <= 3600000 ? "10s" : windowMs() <= 21600000 ? "1m" : "5m";
  try {
    const [depth, score] = await Promise.all([
      getJson(`${API}/history/depth?asset=${encodeURIComponent(asset)}&from=${from}&to=${to}&interval=${interval}&limit=10000`),
      getJson(`${API}/history/scores?asset=${encodeURIComponent(asset)}&from=${from}&to=${to}&interval=${interval}&limit=10000`),
    ]);
    const venues = new Map();
    for (const b of depth.buckets) {
      const k = b.venue + "|" + b.symbol;
      if (!venues.has(k)) venues.set(k, { t: [], v: [] });
      venues.get(k).t.push(b.ts_ms / 1000); venues.get(k).v.push(b.avg);
    }
    const sc = { t: [], v: [] };
    for (const b of score.buckets) { sc.t.push(b.ts_ms / 1000); sc.v.push(b.max); }
    state.history = { asset, venues, score: sc };
    $("depth-source").textContent = `history ${interval} buckets + live ticks`;
  } catch (e) {
    state.history = null;
    $("depth-source").textContent = "live ticks since the page opened (" + e.message + ")";
  }
  scheduleDraw();
}

async function getJson(url) {
  const r = await fetch(url);
  if (!r.ok) {
    let msg = r.status + "";
    try { const j = await r.json(); msg = j.error && j.error.message ? j.error.message : msg; } catch (_) { /* not JSON */ }
    throw new Error(msg);
  }
  return r.json();
}

// --- book depth curve -------------------------------------------------------------------------
function fillBookSelect() {
  const sel = $("book-select");
  const rows = state.rows.filter((r) => r.asset === state.asset).sort((a, b) => (a.venue + a.symbol < b.venue + b.symbol ? -1 : 1));
  const want = rows.map((r) => r.venue + "|" + r.symbol).join(",");
  if (sel.dataset.keys === want) return;
  const prev = sel.value;
  sel.dataset.keys = want;
  sel.innerHTML = rows.map((r) => `<option value="${esc(r.venue + "|" + r.symbol)}">${esc(r.venue)} ${esc(r.symbol)}</option>`).join("");
  if (rows.some((r) => r.venue + "|" + r.symbol === prev)) sel.value = prev;
  else {
    const best = rows.filter((r) => r.valid).sort((a, b) => (b.depth_1pct_usd || 0) - (a.depth_1pct_usd || 0))[0];
    if (best) sel.value = best.venue + "|" + best.symbol;
    loadBook();
  }
}

function cumulative(levels, fx) {
  const px = [], cum = [];
  let total = 0;
  for (const [p, q] of levels) {
    const price = Number(p), qty = Number(q);
    total += price * qty * fx;
    px.push(price); cum.push(total);
  }
  return { px, cum };
}

async function loadBook() {
  const key = $("book-select").value;
  if (!key) return;
  const [venue, symbol] = key.split("|");
  const at = $("book-at").value;
  const row = state.rows.find((r) => r.venue === venue && r.symbol === symbol);
  const fx = row && row.mid && row.mid_usd ? row.mid_usd / row.mid : 1;
  let book, source;
  try {
    if (at && state.info && state.info.history) {
      const ms = new Date(at + "Z").getTime();
      book = await getJson(`${API}/book?venue=${encodeURIComponent(venue)}&symbol=${encodeURIComponent(symbol)}&at=${ms}`);
      source = "stored snapshot at " + (book.ts || "");
    } else {
      book = await getJson(`${API}/live/book?venue=${encodeURIComponent(venue)}&symbol=${encodeURIComponent(symbol)}&depth=200`);
      source = "live, " + (book.ts || "");
    }
  } catch (e) {
    $("book-source").textContent = e.message;
    return;
  }
  $("book-source").textContent = source;
  $("book-title").textContent = `${venue} ${symbol}`;
  const bids = cumulative(book.bids, fx), asks = cumulative(book.asks, fx);
  // one price axis: bids (descending prices) reversed to ascending, then asks
  const xs = [...bids.px.slice().reverse(), ...asks.px];
  const yb = [...bids.cum.slice().reverse(), ...new Array(asks.px.length).fill(null)];
  const ya = [...new Array(bids.px.length).fill(null), ...asks.cum];
  const data = [xs, yb, ya];
  const el = $("book-chart");
  if (state.bookPlot) state.bookPlot.destroy();
  state.bookPlot = new uPlot({
    width: Math.max(300, el.clientWidth), height: 300,
    scales: { x: { time: false } },
    series: [
      { label: "price", value: (u, v) => (v === null ? "—" : String(v)) },
      { label: "bids (cum. USD)", stroke: "#3fb950", fill: "rgba(63,185,80,.15)", width: 1.5, value: (u, v) => fmtUsd(v) },
      { label: "asks (cum. USD)", stroke: "#f85149", fill: "rgba(248,81,73,.15)", width: 1.5, value: (u, v) => fmtUsd(v) },
    ],
    axes: [
      { stroke: "#7d8896", grid: { stroke: "#263040" } },
      { stroke: "#7d8896", grid: { stroke: "#263040" }, values: (u, vs) => vs.map(fmtUsd), size: 70 },
    ],
  }, data, el);
}

// --- events -----------------------------------------------------------------------------------
function eventText(e) {
  if (e.kind === "book_state") return `${e.venue} ${e.symbol}: ${e.from} → ${e.to}`;
  if (e.kind === "score") {
    const scope = e.venue ? `${e.venue} ${e.symbol}` : e.asset || "market";
    const value = e.value !== undefined && e.value !== null ? ` (${Number(e.value).toFixed(0)})` : "";
    const parts = e.components ? Object.entries(e.components).filter(([, p]) => p >= 0.5)
      .sort((a, b) => b[1] - a[1]).slice(0, 3).map(([n, p]) => `${n} ${p.toFixed(0)}`).join(", ") : "";
    return `${scope}: ${e.from || "?"} → ${e.to || e.state}${value}${parts ? " — " + parts : ""}`;
  }
  if (e.kind === "note") return `${e.venue || e.asset || "note"}: ${e.text}`;
  const scope = [e.venue, e.symbol, e.asset].filter(Boolean).join(" ");
  return `${scope}: ${e.state || ""} ${e.rule || e.message || ""}`;
}

function addEvents(list) {
  const seen = new Set(state.events.map((e) => e.id));
  for (const e of list) if (!seen.has(e.id)) state.events.push(e);
  state.events.sort((a, b) => b.ts - a.ts || b.id - a.id);
  state.events.length = Math.min(state.events.length, 500);
  $("events").innerHTML = state.events.map((e) => {
    const st = e.to || e.state || "";
    return `<li data-kind="${esc(e.kind)}"><span>${fmtTime(e.ts)}</span><span class="kind">${esc(e.kind)}</span>` +
      `<span><span class="state state-${esc(st)}">${esc(eventText(e))}</span></span></li>`;
  }).join("");
}

// --- the socket -------------------------------------------------------------------------------
function connect() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}${API}/live/ws`);
  state.ws = ws;
  ws.onopen = () => { $("conn").textContent = "live"; $("conn").className = "pill on"; state.retry = 500; };
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.type === "tick") onTick(msg);
    else if (msg.type === "event") addEvents([msg.event]);
    else if (msg.type === "hello") addEvents(msg.events || []);
  };
  ws.onclose = () => {
    $("conn").textContent = "reconnecting…"; $("conn").className = "pill off";
    setTimeout(connect, state.retry);
    state.retry = Math.min(state.retry * 2, 10000);
  };
  ws.onerror = () => { /* onclose follows and reconnects */ };
}

function onAssetChange() {
  state.history = null;
  if (state.depthPlot) { state.depthPlot.destroy(); state.depthPlot = null; }
  $("book-select").dataset.keys = "";
  loadHistory();
}

$("asset-tabs").addEventListener("click", (ev) => {
  const b = ev.target.closest("button");
  if (!b) return;
  state.asset = b.dataset.asset;
  onAssetChange();
  renderTables();
  fillBookSelect();
});
$("window").addEventListener("change", () => { loadHistory(); });
$("book-select").addEventListener("change", loadBook);
$("book-at").addEventListener("change", loadBook);
$("book-now").addEventListener("click", () => { $("book-at").value = ""; loadBook(); });
window.addEventListener("resize", () => {
  if (state.depthPlot) state.depthPlot.setSize({ width: $("depth-chart").clientWidth, height: 300 });
  if (state.bookPlot) state.bookPlot.setSize({ width: $("book-chart").clientWidth, height: 300 });
});
setInterval(() => { if ($("book-at").value === "") loadBook(); }, 5000);

getJson(`${API}/info`).then((info) => { state.info = info; loadHistory(); }, () => { state.info = null; });
connect();
