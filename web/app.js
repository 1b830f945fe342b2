// The page: reads the form and the URL, asks the worker for estimates, renders the answers.
// All arithmetic happens in pycore; this file only formats and draws.
import { DEFAULTS, parseQuery, toQuery, toRequest } from "./state.js";

const $ = (sel) => document.querySelector(sel);
const form = $("#form");
const COLORS = { "weights": "#4e79a7", "autocast weight copies": "#76b7b2", "gradients": "#f28e2b", "optimizer states": "#e15759",
  "activations": "#59a14f", "logits and loss": "#edc948", "KV cache": "#b07aa1", "temporaries": "#ff9da7",
  "allocator reserve": "#9c755f", "CUDA context": "#bab0ac" };
const UNITS = { gib: [2 ** 30, "GiB"], gb: [1e9, "GB"] };

let catalog = { models: [], gpus: [] };
let state = { ...DEFAULTS, pins: [] };
let lastResult = null;
let seq = 0;
let latestShown = 0;
const pending = new Map();
const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
let workerReady = false;

// Registered once the core has loaded, so that its precache never races the first download of
// the same files (and then mostly revalidates what the browser already has).
function registerServiceWorker() {
  if ("serviceWorker" in navigator && location.protocol !== "file:") navigator.serviceWorker.register("sw.js").catch(() => {});
}

function text(el, value) { el.textContent = value; return el; }
function make(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "text") el.textContent = v;
    else if (k === "class") el.className = v;
    else if (k === "style") el.style.cssText = v;       // CSSOM: allowed under the page's CSP
    else el.setAttribute(k, v);
  }
  for (const c of children) el.append(c);
  return el;
}
function fmt(bytes) { const [d, u] = UNITS[state.unit]; return `${(bytes / d).toFixed(2)} ${u}`; }
function showMessages(list) {
  const box = $("#messages");
  box.replaceChildren(...list.map((m) => make("div", { class: "msg", text: m })));
}

worker.onmessage = (event) => {
  const msg = event.data;
  if (msg.type === "progress") text($("#status"), msg.text);
  else if (msg.type === "failed") text($("#status"), `The estimator failed to load: ${msg.text}`);
  else if (msg.type === "ready") { workerReady = true; text($("#status"), ""); update(); registerServiceWorker(); }
  else if (msg.type === "result") {
    const cb = pending.get(msg.id);
    pending.delete(msg.id);
    if (cb) cb(msg.response, msg.ms);
  }
};
function ask(request) {
  return new Promise((resolve) => {
    const id = ++seq;
    pending.set(id, (response, ms) => resolve({ id, response, ms }));
    worker.postMessage({ id, request });
  });
}

// ---- form <-> state ------------------------------------------------------------
function fillPickers(filter = "") {
  const sel = $("#model");
  const f = filter.toLowerCase();
  const groups = new Map();
  for (const m of catalog.models) {
    if (f && !(`${m.id} ${m.family}`.toLowerCase().includes(f))) continue;
    if (!groups.has(m.family)) groups.set(m.family, make("optgroup", { label: m.family }));
    groups.get(m.family).append(make("option", { value: m.id, text: `${m.id} (${(m.params / 1e9).toFixed(m.params < 1e9 ? 2 : 1)} B)` }));
  }
  sel.replaceChildren(...groups.values());
  sel.value = state.model;
  if (sel.value !== state.model && sel.options.length && f) sel.selectedIndex = 0;
  const gpu = $("#gpu");
  if (!gpu.options.length) {
    const byVendor = new Map();
    for (const g of catalog.gpus) {
      if (!byVendor.has(g.vendor)) byVendor.set(g.vendor, make("optgroup", { label: g.vendor }));
      byVendor.get(g.vendor).append(make("option", { value: g.id, text: `${g.name} (${(g.memory_bytes / 2 ** 30).toFixed(1)} GiB)` }));
    }
    gpu.replaceChildren(...byVendor.values());
  }
}

function stateToForm() {
  const f = form.elements;
  for (const r of form.querySelectorAll('input[name="source"]')) r.checked = r.value === state.source;
  fillPickers($("#model-search").value);
  f.mode.value = state.mode; f.batch.value = state.batch; f.seq.value = state.seq; f.new.value = state.new;
  f.weights.value = state.weights; f.amp.value = state.amp; f.opt.value = state.opt; f.attn.value = state.attn;
  f.ckpt.checked = state.ckpt; f.rank.value = state.rank; f.targets.value = state.targets; f.kv.value = state.kv;
  f.gpu.value = state.gpu; f.mem.value = state.mem ?? ""; f.dp.value = state.dp; f.zero.value = state.zero;
  if (state.cfg) $("#config-text").value = JSON.stringify(state.cfg, null, 1);
  if (state.dims) {
    f.d_layers.value = state.dims.n_layers; f.d_hidden.value = state.dims.hidden_size; f.d_ffn.value = state.dims.ffn_size;
    f.d_heads.value = state.dims.n_heads; f.d_kv.value = state.dims.n_kv_heads; f.d_vocab.value = state.dims.vocab_size;
    f.d_tied.checked = state.dims.tied_embeddings;
  }
  for (const b of document.querySelectorAll(".unit-toggle button")) b.setAttribute("aria-pressed", String(b.dataset.unit === state.unit));
  syncVisibility();
}

function intOr(value, fallback) { const n = Number(value); return Number.isInteger(n) && n >= 0 ? n : fallback; }

function formToState() {
  const f = form.elements;
  const messages = [];
  state.source = form.querySelector('input[name="source"]:checked').value;
  state.model = f.model.value || state.model;
  state.mode = f.mode.value; state.weights = f.weights.value; state.amp = f.amp.value; state.opt = f.opt.value;
  state.attn = f.attn.value; state.ckpt = f.ckpt.checked; state.kv = f.kv.value; state.gpu = f.gpu.value;
  state.batch = intOr(f.batch.value, state.batch); state.seq = intOr(f.seq.value, state.seq);
  state.new = intOr(f.new.value, state.new); state.rank = intOr(f.rank.value, state.rank);
  state.dp = Math.max(1, intOr(f.dp.value, state.dp)); state.zero = f.zero.value;
  state.targets = f.targets.value.trim();
  const mem = Number(f.mem.value);
  state.mem = f.mem.value !== "" && mem > 0 ? mem : null;
  if (state.source === "config") {
    const raw = $("#config-text").value.trim();
    if (raw) {
      try { state.cfg = JSON.parse(raw); } catch (e) { messages.push(`config.json is not valid JSON: ${e.message}`); }
    }
  }
  if (state.source === "custom") {
    state.dims = { n_layers: intOr(f.d_layers.value, 1), hidden_size: intOr(f.d_hidden.value, 1), ffn_size: intOr(f.d_ffn.value, 1),
      n_heads: intOr(f.d_heads.value, 1), n_kv_heads: intOr(f.d_kv.value, 1), vocab_size: intOr(f.d_vocab.value, 1),
      tied_embeddings: f.d_tied.checked };
  }
  syncVisibility();
  return messages;
}

function syncVisibility() {
  for (const el of form.querySelectorAll("[data-source]")) el.hidden = el.dataset.source !== state.source;
  for (const el of form.querySelectorAll("[data-modes]")) {
    const on = el.dataset.modes.split(" ").includes(state.mode);
    if (el.tagName === "OPTION") el.disabled = !on; else el.hidden = !on;
  }
}

// ---- rendering -----------------------------------------------------------------
function renderError(resp) {
  const e = resp.errors[0];
  text($("#status"), `${e.field}: ${e.message}`);
  text($("#peak"), "–"); text($("#verdict"), ""); $("#verdict").className = "verdict";
}

function renderMain(res) {
  lastResult = res;
  const [div, unit] = UNITS[state.unit];
  text($("#unit-label"), unit);
  text($("#status"), res.warnings.length ? `Note: ${res.warnings.join(" ")}` : "");
  text($("#peak"), (res.device_total_bytes / div).toFixed(2));
  const v = $("#verdict");
  v.className = `verdict ${res.fits ? "fits" : "does-not-fit"}`;
  text(v, res.fits ? "fits" : "does-not-fit");
  const head = Math.abs(res.headroom_bytes);
  text($("#verdict-text"), res.fits ? `on ${res.gpu.name}, with ${fmt(head)} to spare`
    : `on ${res.gpu.name}: ${fmt(head)} too much (the card has ${fmt(res.gpu.memory_bytes)})`);
  text($("#phase"), `Peak during ${res.peak_phase}: ${res.peak_moment}. torch.cuda.max_memory_allocated ≈ ${fmt(res.peak_allocated_bytes)}.`);
  const top = [...res.breakdown.children[0].children, ...res.breakdown.children.slice(1)];
  const bar = $("#bar");
  const total = Math.max(res.device_total_bytes, res.gpu.memory_bytes);
  bar.replaceChildren(...top.map((c) => make("div", { class: "seg", title: `${c.name}: ${fmt(c.bytes)}`,
    style: `width:${(100 * c.bytes / total).toFixed(3)}%;background:${COLORS[c.name] || "#888"}` })));
  bar.append(make("div", { class: "limit", title: "GPU memory", style: `left:${(100 * res.gpu.memory_bytes / total).toFixed(3)}%` }));
  const body = $("#table tbody");
  const rows = [];
  for (const c of top) {
    const name = make("td");
    const det = make("details", { "data-term": c.name });
    det.append(make("summary", {}, make("span", { class: "swatch", style: `background:${COLORS[c.name] || "#888"}` }), c.name));
    det.append(make("div", { class: "explain", text: "…" }));
    name.append(det);
    rows.push(make("tr", {}, name, make("td", { class: "num", text: fmt(c.bytes) })));
    for (const leaf of (c.children || []).slice(0, 8)) {
      rows.push(make("tr", { class: "sub" }, make("td", { text: leaf.name }), make("td", { class: "num", text: fmt(leaf.bytes) })));
    }
  }
  rows.push(make("tr", {}, make("th", { text: "device total (nvidia-smi)" }), make("th", { class: "num", text: fmt(res.device_total_bytes) })));
  body.replaceChildren(...rows);
}

function renderSolved(res) {
  text($("#solver"), `Largest batch that fits: ${res.max_batch_size}. Longest sequence that fits: ${res.max_seq_len.toLocaleString()} tokens.`);
  for (const det of document.querySelectorAll("#table details")) {
    const ex = res.explanations[det.dataset.term];
    const box = det.querySelector(".explain");
    if (!ex) { text(box, ""); continue; }
    const anchor = (res.breakdown.children[0].children.find((c) => c.name === det.dataset.term) || {}).key
      || { "allocator reserve": "allocator", "CUDA context": "cuda-context" }[det.dataset.term] || "";
    box.replaceChildren(make("p", { text: ex.what }), make("p", {}, "Formula: ", make("code", { text: ex.formula })),
      make("p", {}, "Here: ", make("code", { text: ex.numbers })),
      make("a", { href: `docs/method/#${anchor}`, text: "Method and sources" }));
  }
  const list = $("#suggestions");
  list.replaceChildren(...res.suggestions.map((s) => {
    const b = make("button", { type: "button", text: s.change });
    b.addEventListener("click", () => applyChange(s.set));
    return make("li", {}, b, ` → ${fmt(s.device_total_bytes)}${s.fits ? " (fits)" : ""}`);
  }));
}

function applyChange(set) {
  const w = set.workload || {}, p = set.precision || {};
  if (w.gradient_checkpointing !== undefined) state.ckpt = w.gradient_checkpointing;
  if (w.mode) state.mode = w.mode;
  if (w.optimizer) state.opt = w.optimizer;
  if (w.attention) state.attn = w.attention;
  if (w.batch_size) state.batch = w.batch_size;
  if (p.weights) state.weights = p.weights;
  if ("autocast" in p) state.amp = p.autocast || "";
  if (p.kv_cache) state.kv = p.kv_cache;
  stateToForm();
  update();
}

// ---- compare -------------------------------------------------------------------
async function renderCompare() {
  const box = $("#compare");
  if (!state.pins.length) { box.replaceChildren(); return; }
  const rows = [];
  for (const [i, pin] of state.pins.entries()) {
    const { state: s } = await parseQuery(pin, catalog);
    const { response } = await ask(toRequest(s, false));
    const label = s.source === "catalog" ? s.model : s.source;
    const cell = response.status === "ok" ? `${fmt(response.result.device_total_bytes)} ${response.result.fits ? "fits" : "does not fit"}` : response.errors[0].message;
    const rm = make("button", { type: "button", text: "Unpin" });
    rm.addEventListener("click", () => { state.pins.splice(i, 1); update(); });
    const open = make("a", { href: `?${pin}`, text: `${label}, ${s.mode}, b=${s.batch}, s=${s.seq}, ${s.gpu}` });
    rows.push(make("tr", {}, make("td", {}, open), make("td", { class: "num", text: cell }), make("td", {}, rm)));
  }
  box.replaceChildren(make("h2", { text: "Compare" }), make("table", {}, make("tbody", {}, ...rows)));
}

// ---- the update loop --------------------------------------------------------------
let pushing = false;
async function update({ push = true } = {}) {
  const query = await toQuery(state);
  if (push && !pushing && `?${query}` !== location.search && !(query === "" && location.search === "")) {
    history.pushState(null, "", query ? `?${query}` : location.pathname);
  }
  if (!workerReady) return;
  const request = toRequest(state, false);
  const { id, response } = await ask(request);
  if (id < latestShown) return;
  latestShown = id;
  if (response.status !== "ok") { renderError(response); return; }
  renderMain(response.result);
  document.body.dataset.query = query;          // which configuration the shown result belongs to
  document.body.dataset.computed = String(id);
  const solved = await ask(toRequest(state, true));
  if (solved.id < latestShown) return;
  if (solved.response.status === "ok") renderSolved(solved.response.result);
  renderCompare();
}

async function loadFromURL() {
  const { state: s, messages } = await parseQuery(location.search, catalog);
  state = s;
  showMessages(messages);
  stateToForm();
}

form.addEventListener("input", (event) => {
  if (event.target.id === "model-search") { fillPickers(event.target.value); if ($("#model").value) state.model = $("#model").value; }
  if (event.target.id === "config-file") return;
  const messages = formToState();
  showMessages(messages);
  update();
});
form.addEventListener("submit", (e) => e.preventDefault());
$("#config-file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (file) { $("#config-text").value = await file.text(); formToState(); update(); }
});
for (const zone of [$("#config-text")]) {
  zone.addEventListener("dragover", (e) => e.preventDefault());
  zone.addEventListener("drop", async (e) => {
    e.preventDefault();
    const file = e.dataTransfer.files[0];
    if (file) { zone.value = await file.text(); state.source = "config"; stateToForm(); formToState(); update(); }
  });
}
for (const b of document.querySelectorAll(".unit-toggle button")) {
  b.addEventListener("click", () => { state.unit = b.dataset.unit; stateToForm(); update(); });
}
$("#copy").addEventListener("click", async () => {
  try { await navigator.clipboard.writeText(location.href); text($("#copied"), "Link copied."); }
  catch { text($("#copied"), "Copy this address from the address bar."); }
});
$("#pin").addEventListener("click", async () => {
  const q = await toQuery(state, { withPins: false });
  if (state.pins.length >= 4) state.pins.shift();
  state.pins.push(q);
  update();
});
$("#theme").addEventListener("click", () => {
  const root = document.documentElement;
  const dark = root.dataset.theme ? root.dataset.theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  root.dataset.theme = dark ? "light" : "dark";
  try { localStorage.setItem("theme", root.dataset.theme); } catch {}
});
try { const t = localStorage.getItem("theme"); if (t) document.documentElement.dataset.theme = t; } catch {}
window.addEventListener("popstate", async () => { pushing = true; await loadFromURL(); await update({ push: false }); pushing = false; });

catalog = await (await fetch("catalog.json")).json();
await loadFromURL();
update({ push: false });
