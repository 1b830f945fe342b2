// The page: reads the form and the URL, asks the worker for estimates, renders the answers.
// All arithmetic and all validation happen in pycore; this file formats, draws and routes the
// core's messages to the field they name.
import { PARAMS, applies, defaults, paramOf, parseQuery, parseValue, registerParams, toPlanRequest, toQuery,
  toRequest, readAtMost } from "./state.js";

const $ = (sel) => document.querySelector(sel);
const form = $("#form");
const COLORS = { "weights": "#4e79a7", "autocast weight copies": "#76b7b2", "gradients": "#f28e2b", "optimizer states": "#e15759",
  "activations": "#59a14f", "logits and loss": "#edc948", "KV cache": "#b07aa1", "temporaries": "#ff9da7",
  "allocator reserve": "#9c755f", "CUDA context": "#bab0ac", "framework buffers": "#86bcb6",
  "activation peak (profiled; cached by the allocator)": "#59a14f", "non-torch memory": "#d37295", "CUDA graphs": "#fabfd2",
  "model buffer (GGUF weights)": "#4e79a7", "compute buffer": "#ff9da7", "request-to-token table": "#d4a6c8" };
// Parts of one term, told apart by shade in the expanded bar and the compare bars' unknown terms.
const SHADES = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
const UNITS = { gib: [2 ** 30, "GiB"], gb: [1e9, "GB"] };
// A request that takes longer than this is abandoned and the worker restarted (an estimate takes
// milliseconds; only a pathological input could take seconds).
const REQUEST_TIMEOUT_MS = 8000;
// A layout search evaluates thousands of layouts (under a second natively, a few in the browser).
const PLAN_TIMEOUT_MS = 60000;

let catalog = null;
let state = null;
let lastGood = null;          // the last state the core accepted
let seq = 0;
let latestShown = 0;
const pending = new Map();
let worker = null;
let workerReady = false;
let formReady = false;        // the form holds the link's state: only then may the worker's "ready" compute

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
// The core's verdict (fits, at risk: the error band straddles the GPU's memory, does not fit) and its band.
const VERDICT_KEYS = { "fits": "fits", "at risk": "at-risk", "does not fit": "does-not-fit", "does not start": "does-not-fit" };
function showVerdict(res) {
  const key = VERDICT_KEYS[res.verdict] || (res.fits ? "fits" : "does-not-fit");
  const v = $("#verdict");
  v.className = `verdict ${key}`;
  text(v, key);
  text($("#band"), res.error_band ? res.error_band.basis : "");
  return key;
}
// At risk with room at the estimate: the band's upper edge is over the card (issue 22).
function atRiskNote(res) {
  const band = res.bands && res.bands.device_total;
  return res.verdict === "at risk" && band ? ` at the estimate, but the band reaches ${fmt(band.high_bytes)}` : "";
}
// The core's first error as "field: message", or what to say when there is none (a timed-out request).
function errorText(response, otherwise) {
  return response.errors ? `${response.errors[0].field}: ${response.errors[0].message}` : otherwise;
}
function fmt(bytes) { const [d, u] = UNITS[state.unit]; return `${(bytes / d).toFixed(2)} ${u}`; }
function showMessages(list) {
  $("#messages").replaceChildren(...list.map((m) => make("div", { class: "msg", text: typeof m === "string" ? m : m.text })));
}

// ---- the worker ------------------------------------------------------------------
function registerServiceWorker() {
  // register() on an existing registration does not look for a new sw.js, and Chromium's check on
  // navigation is not reliable (seen in the deploy test): ask for one on every load, a conditional GET.
  if ("serviceWorker" in navigator && location.protocol !== "file:") {
    navigator.serviceWorker.register("sw.js").then((reg) => reg.update()).catch(() => {});
  }
}

let workerStartedAt = 0;
const START_RETRIES = 2;
let startFailures = 0;
function startWorker() {
  workerReady = false;
  // boot.js started the first worker with the page; a restart starts a new one the same way
  // (a page whose boot.js did not load, or an index.html older than this file, starts it here)
  const booted = globalThis.gmpTakeWorker?.();
  workerStartedAt = booted ? booted.startedAt : performance.now();
  worker = booted ? booted.worker
    : globalThis.gmpStartWorker?.() ?? new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  worker.onmessage = (event) => {
    const msg = event.data;
    if (msg.type === "progress") text($("#status"), msg.text);
    else if (msg.type === "failed") {
      // A start that fails (a fetch that broke off, a runtime that did not instantiate) gets a fresh worker,
      // twice; the files are in the browser's cache by then, so it costs a second or so.
      if (startFailures++ < START_RETRIES) {
        text($("#status"), `The estimator failed to load (${msg.text}); starting it again…`);
        worker.terminate();
        startWorker();
      } else text($("#status"), `The estimator failed to load: ${msg.text}`);
    }
    else if (msg.type === "ready") {
      workerReady = true;
      document.body.dataset.startPath = msg.path || "";          // fresh | snapshot | fallback
      document.body.dataset.startLookup = msg.looked ? "yes" : "no";  // did the worker look for a snapshot?
      document.body.dataset.startTimings = JSON.stringify({ workerStarted: Math.round(workerStartedAt), ...(msg.timings || {}) });
      text($("#status"), msg.path === "fallback" ? "The saved snapshot did not restore; started Python normally." : "");
      if (msg.path === "fallback") globalThis.gmpSnapshotHint?.(null);
      if (formReady) update();                                    // otherwise the first update runs once the form is built
      registerServiceWorker();
    } else if (msg.type === "snapshot") {
      document.body.dataset.snapshot = msg.state;
      if (msg.state === "stored") globalThis.gmpSnapshotHint?.(msg.build);
    }
    else if (msg.type === "started") {
      // The watchdog times the worker's work on this request, not the time it waited behind others.
      const p = pending.get(msg.id);
      if (p) { clearTimeout(p.timer); p.timer = setTimeout(() => restartWorker(msg.id), p.timeout); }
    } else if (msg.type === "result") {
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (p) { clearTimeout(p.timer); p.resolve({ id: msg.id, response: JSON.parse(msg.response) }); }
    }
  };
  // replayed in order; a replayed failure that restarts the worker ends the replay
  if (booted) for (const event of booted.early) { if (worker !== booted.worker) break; worker.onmessage(event); }
}

// What a request is, in the words of the message that says it timed out.
function describeRequest(kind, request) {
  if (kind !== "estimate") return kind === "links" ? "Writing the command and the link" : "A diagnostic request";
  if (request.plan) return "The search for the fewest GPUs";
  if (request.sweep) return "The sweep";
  if (request.measured) return "The comparison with your measurement";
  if (request.fit || request.solve) return "The search for what fits (largest batch, longest sequence and fixes)";
  return "The estimate";
}
// Requests that ran past their watchdog, by kind and text: they are never sent again (sending the same
// request would time out again, and a page that replays it after each restart never settles). ask()
// answers them at once with status "timeout".
const timedOut = new Set();
// The watchdog fired on request `culprit`: abandon every request in flight and start a new worker. The
// user's configuration stays as it is (the form is not reset); the request that timed out is named, and
// the new worker answers the current configuration without it.
function restartWorker(culprit) {
  worker.terminate();
  const c = pending.get(culprit);
  if (c) timedOut.add(c.key);
  for (const [id, p] of pending) { clearTimeout(p.timer); p.resolve({ id, response: { status: "timeout", culprit: id === culprit } }); }
  pending.clear();
  const what = c ? c.what : "A request";
  showMessages([`${what} took more than ${(c ? c.timeout : REQUEST_TIMEOUT_MS) / 1000} s on this configuration and was stopped; `
    + "it will not be run again for this configuration. Change a setting to continue."]);
  startWorker();
}

// A request waits in the worker's queue behind the ones before it; each of those has its own watchdog,
// so the queue itself gets a generous limit (a worker that never answers is still restarted).
const QUEUE_TIMEOUT_MS = 60000;
function ask(request, timeout = REQUEST_TIMEOUT_MS, kind = "estimate") {
  return new Promise((resolve) => {
    const id = ++seq;
    const body = kind === "estimate" || kind === "links" ? JSON.stringify(request) : request;
    const key = `${kind} ${body}`;
    if (timedOut.has(key)) { resolve({ id, response: { status: "timeout", repeated: true } }); return; }
    const timer = setTimeout(() => restartWorker(id), QUEUE_TIMEOUT_MS + timeout);
    pending.set(id, { resolve, timer, timeout, key, what: describeRequest(kind, request) });
    worker.postMessage({ id, kind, request: body });
  });
}
// Diagnostics (used by the tests): does a standard-library module import in the worker?
globalThis.gmpImportCheck = async (name) => (await ask(String(name), 30000, "import")).response.result;

// ---- form <-> state ------------------------------------------------------------
function field(param) { return catalog.request.fields[PARAMS[param]]; }

// The serving fieldset, one control per serving field of the schema (the engine picks which show).
function buildServeFields() {
  const box = $("#serve-fields");
  const controls = [];
  for (const [param, path] of Object.entries(PARAMS)) {
    const f = catalog.request.fields[path];
    if (!f.modes || f.modes.length !== 1 || f.modes[0] !== "serve") continue;
    const label = param.replace(/_/g, " ");
    let control;
    if (f.type === "bool") {
      control = make("label", { class: "check" }, make("input", { name: param, type: "checkbox" }), ` ${label}`);
    } else if (f.type === "choice") {
      control = make("label", {}, `${label} `, make("select", { name: param }));
    } else {
      const input = make("input", { name: param, type: f.type === "text" ? "text" : "number",
        inputmode: f.type === "int" ? "numeric" : "decimal", placeholder: f.nullable ? "default" : "" });
      if (f.type === "number") input.step = "any";
      control = make("label", {}, `${label} `, input);
    }
    if (f.doc) control.title = f.doc;
    controls.push(control);
  }
  box.replaceChildren(...controls);
}

function buildForm() {
  for (const sel of form.querySelectorAll("select[name]")) {
    const param = sel.name;
    if (!PARAMS[param]) continue;
    const f = field(param);
    const options = [];
    if (f.nullable) options.push(make("option", { value: "", text: (f.labels || {})[""] || "default" }));
    const values = f.choices || (f.type === "int" ? Object.keys(f.labels || {}) : []);
    for (const v of values) options.push(make("option", { value: String(v), text: (f.labels || {})[v] || String(v) }));
    sel.replaceChildren(...options);
  }
  for (const input of form.querySelectorAll("input[name]")) {
    const f = PARAMS[input.name] && field(input.name);
    if (!f) continue;
    if (f.minimum !== undefined) input.min = f.minimum;
    if (f.maximum !== undefined) input.max = f.maximum;
    if (f.doc) input.title = f.doc;
    input.setAttribute("aria-describedby", `err-${input.name}`);
  }
  for (const el of form.querySelectorAll("[name]")) {
    if (!PARAMS[el.name] && !["gpu", "model"].includes(el.name)) continue;
    const err = make("span", { class: "field-error", id: `err-${el.name}`, role: "alert", "aria-live": "polite" });
    (el.closest("label") || el).after(err);
  }
}

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
  if (state.hub) $("#hub-id").value = state.hub;
  fillPickers($("#model-search").value);
  for (const param of Object.keys(PARAMS)) {
    const el = f[param];
    if (!el) continue;
    if (el.type === "checkbox") el.checked = Boolean(state[param]);
    else el.value = state[param] === null ? "" : String(state[param]);
  }
  f.gpu.value = state.gpu;
  if (state.cfg !== null) $("#config-text").value = state.cfg;
  if (state.dims) {
    f.d_layers.value = state.dims.n_layers; f.d_hidden.value = state.dims.hidden_size; f.d_ffn.value = state.dims.ffn_size;
    f.d_heads.value = state.dims.n_heads; f.d_kv.value = state.dims.n_kv_heads; f.d_vocab.value = state.dims.vocab_size;
    f.d_tied.checked = state.dims.tied_embeddings;
  }
  for (const b of document.querySelectorAll(".unit-toggle button")) b.setAttribute("aria-pressed", String(b.dataset.unit === state.unit));
  for (const param of Object.keys(PARAMS)) fieldError(param, "");
  syncVisibility();
}

function fieldError(param, message) {
  const err = document.getElementById(`err-${param}`);
  if (err) text(err, message);
  const el = form.elements[param];
  if (el && el.setAttribute) { if (message) el.setAttribute("aria-invalid", "true"); else el.removeAttribute("aria-invalid"); }
}

// Read the control that changed into the state, if its value is valid; otherwise say why next to it.
function readControl(el) {
  const param = el.name;
  if (param === "source") { state.source = form.querySelector('input[name="source"]:checked').value; return true; }
  if (param === "model") { state.model = el.value || state.model; return true; }
  if (param === "gpu") { state.gpu = el.value; return true; }
  if (param === "config-text" || el.id === "config-text") { state.cfg = el.value.trim() || null; state.hub = null; return true; }
  if (el.id === "hub-id") return false;                           // fetched on the button, not on typing
  if (param.startsWith("d_")) { readDims(); return true; }
  if (!PARAMS[param]) return false;
  const raw = el.type === "checkbox" ? (el.checked ? "1" : "0") : el.value;
  if (param === "mem" && raw === "") { state.mem = null; fieldError(param, ""); return true; }
  const r = parseValue(field(param), raw);
  if (!r.ok) { fieldError(param, `${raw === "" ? "A value" : `“${raw.slice(0, 30)}”`} ${r.why}.`); return false; }
  fieldError(param, "");
  state[param] = r.value;
  return true;
}

function readDims() {
  const f = form.elements;
  const n = (el) => (/^\d{1,9}$/.test(el.value) ? Number(el.value) : 0);
  state.dims = { n_layers: n(f.d_layers), hidden_size: n(f.d_hidden), ffn_size: n(f.d_ffn), n_heads: n(f.d_heads),
    n_kv_heads: n(f.d_kv), vocab_size: n(f.d_vocab), tied_embeddings: f.d_tied.checked };
}

function syncVisibility() {
  for (const el of form.querySelectorAll("[data-source]")) el.hidden = el.dataset.source !== state.source;
  for (const param of Object.keys(PARAMS)) {
    const el = form.elements[param];
    if (!el) continue;
    const box = el.closest("label") || el;
    box.hidden = !applies(catalog, param, state.mode, state.engine);
  }
  const allowed = catalog.request.weights_by_mode[state.mode] || [];
  for (const opt of form.elements.w.options) opt.disabled = !allowed.includes(opt.value);
  // A fieldset none of whose fields apply to the mode is hidden with them.
  for (const fs of form.querySelectorAll("fieldset")) {
    const controls = [...fs.querySelectorAll("[name]")].filter((el) => PARAMS[el.name]);
    if (controls.length) fs.hidden = controls.every((el) => (el.closest("label") || el).hidden);
  }
  $("#gpu-count").hidden = state.mode === "serve" || !applies(catalog, "recipe", state.mode);
  $("#serve-line").hidden = state.mode !== "serve";
  $("#suggestions").previousElementSibling.hidden = state.mode === "serve";
}

// ---- rendering -----------------------------------------------------------------
// A serving answer: the GPU's parts as the engine budgets them, the KV tokens and requests, and the
// lines the engine itself would print.
function renderServe(res) {
  const [div, unit] = UNITS[state.unit];
  text($("#unit-label"), unit);
  text($("#status"), res.warnings.length ? `Note: ${res.warnings.join(" ")}` : "");
  text($("#peak"), (res.device_total_bytes / div).toFixed(2));
  showVerdict(res);
  const head = Math.abs(res.headroom_bytes);
  text($("#verdict-text"), res.headroom_bytes >= 0 && res.starts ? `on ${res.gpus > 1 ? `each of ${res.gpus} × ` : ""}${res.gpu.name}, with ${fmt(head)} to spare${atRiskNote(res)}`
    : res.starts ? `on ${res.gpu.name}: ${fmt(head)} too much` : `${res.engine} would not start (below)`);
  text($("#phase"), `${res.engine} ${res.version}: the most loaded GPU once the engine has started and captured its graphs.`);
  text($("#layout-line"), res.host ? `Host memory: ${fmt(res.host.bytes)} (mapped weights, CPU layers' KV and compute).` : "");
  text($("#kv-tokens"), res.kv_cache_tokens.toLocaleString("en"));
  text($("#concurrency"), String(res.max_concurrency));
  text($("#ctx-len"), res.context_len.toLocaleString("en"));
  text($("#longest"), `${res.max_context_len.toLocaleString("en")} tokens`);
  const refusal = $("#refusal");
  refusal.hidden = !res.refusal;
  text(refusal, res.refusal ? `The engine refuses: ${res.refusal}` : "");
  text($("#engine-log"), Object.entries(res.report).filter(([k, val]) => /^[A-Z]/.test(k) || k === "file size")
    .map(([k, val]) => `${k}: ${typeof val === "object" ? JSON.stringify(val) : val}`).join("\n"));
  const top = drawAnswerBar(res);
  const rows = [];
  for (const c of top) {
    rows.push(make("tr", {}, make("td", {}, make("span", { class: "swatch", style: `background:${COLORS[c.name] || "#888"}` }), c.name),
      make("td", { class: "num", text: fmt(c.bytes) })));
    for (const leaf of (c.children || []).slice(0, 8)) {
      rows.push(make("tr", { class: "sub" }, make("td", { text: leaf.name }), make("td", { class: "num", text: fmt(leaf.bytes) })));
    }
  }
  rows.push(make("tr", {}, make("th", { text: "device total (nvidia-smi)" }), make("th", { class: "num", text: fmt(res.device_total_bytes) })));
  $("#table tbody").replaceChildren(...rows);
}

function renderServeSolved(res) {
  const sol = res.solutions;
  $("#suggestions").replaceChildren();
  if (!sol) return;
  const lines = [make("p", { "data-testid": "serve-solutions", text: `Longest context for ${sol.target_requests} request(s) at once: `
    + `${sol.longest_context_for_requests.toLocaleString("en")} tokens. Most requests of ${sol.context_len.toLocaleString("en")} tokens: `
    + `${sol.most_requests_at_context.toLocaleString("en")}.` })];
  if (sol.smallest_gpu) lines.push(make("p", { text: `Smallest catalog GPU for that: ${sol.smallest_gpu.name}.` }));
  if (sol.fewest_gpus) lines.push(make("p", { text: `Fewest GPUs of this kind: ${sol.fewest_gpus.gpus}.` }));
  if (sol.gguf) {
    const head = make("tr", {}, ...["preset", "file", "bits/weight", "-ngl that fit", ""].map((h) => make("th", { scope: "col", text: h })));
    const body = sol.gguf.map((c) => {
      const use = make("button", { type: "button", text: "Use" });
      use.addEventListener("click", () => { state.quant = c.quant; state.n_gpu_layers = c.all_layers ? null : c.n_gpu_layers; stateToForm(); update(); });
      return make("tr", { class: sol.best_gguf && sol.best_gguf.quant === c.quant ? "best" : "" },
        make("td", { text: c.quant }), make("td", { class: "num", text: fmt(c.file_bytes) }),
        make("td", { class: "num", text: c.bits_per_weight.toFixed(3) }),
        make("td", { class: "num", text: c.all_layers ? "all" : String(c.n_gpu_layers) }), make("td", {}, use));
    });
    lines.push(make("p", { text: sol.best_gguf ? `Best preset for this card: ${sol.best_gguf.quant}${sol.best_gguf.all_layers ? " with every layer on the GPU" : ` with -ngl ${sol.best_gguf.n_gpu_layers}`}.` : "" }));
    lines.push(make("table", { class: "layouts", "data-testid": "gguf-table" }, make("thead", {}, head), make("tbody", {}, ...body)));
  }
  $("#solver").replaceChildren(...lines);
}

function renderMain(res) {
  const [div, unit] = UNITS[state.unit];
  text($("#unit-label"), unit);
  text($("#status"), res.warnings.length ? `Note: ${res.warnings.join(" ")}` : "");
  text($("#peak"), (res.device_total_bytes / div).toFixed(2));
  showVerdict(res);
  const head = Math.abs(res.headroom_bytes);
  text($("#verdict-text"), res.headroom_bytes >= 0 ? `on ${res.gpu.name}, with ${fmt(head)} to spare${atRiskNote(res)}`
    : `on ${res.gpu.name}: ${fmt(head)} too much (the card has ${fmt(res.gpu.memory_bytes)})`);
  text($("#phase"), `Peak during ${res.peak_phase}: ${res.peak_moment}. torch.cuda.max_memory_allocated ≈ ${fmt(res.peak_allocated_bytes)}.`);
  renderLayoutLine(res);
  const top = drawAnswerBar(res);
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
  $("#table tbody").replaceChildren(...rows);
}

// The device total's terms, the allocated ones first: the core's tree with "allocated at peak" opened.
function topTerms(tree) {
  return tree.children.flatMap((c) => (c.name === "allocated at peak" ? c.children : [c]));
}

// The answer's bar: its terms on the scale of the card or the total, whichever is larger, the chosen
// term expanded again with the new numbers. Returns the terms.
function drawAnswerBar(res) {
  const top = topTerms(res.breakdown);
  drawBar($("#bar"), top, res.gpu.memory_bytes, Math.max(res.device_total_bytes, res.gpu.memory_bytes), expandTerm);
  refreshExpanded(top);
  return top;
}

// A stacked bar of terms on a scale of `scale` bytes, with the card's capacity marked. Each segment is
// a button named by its term and size; choosing one calls pick(term). The table beside it holds the
// same numbers as text.
function drawBar(bar, terms, capacity, scale, pick, colour = termColour) {
  bar.replaceChildren(...terms.filter((c) => c.bytes > 0).map((c, i) => {
    const label = `${c.name}: ${fmt(c.bytes)}`;
    const seg = make(pick ? "button" : "div", { class: "seg", title: label, "aria-label": label, "data-term": c.name,
      style: `width:${(100 * c.bytes / scale).toFixed(3)}%;background:${colour(c.name, i)}` });
    if (pick) { seg.type = "button"; seg.addEventListener("click", () => pick(c)); }
    return seg;
  }));
  if (capacity) bar.append(make("div", { class: "limit", title: `GPU memory: ${fmt(capacity)}`, style: `left:${(100 * capacity / scale).toFixed(3)}%` }));
}

// A term's colour: its own where it has one, else one picked by its name, so that the same term has
// the same colour in every bar.
function termColour(name) {
  if (COLORS[name]) return COLORS[name];
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return SHADES[hash % SHADES.length];
}
const partColour = (name, i) => SHADES[i % SHADES.length];

// A term chosen in the bar: its parts as a second bar with a legend, and its row of the table opened
// (what it is, the core's formula with this run's numbers, the Method link).
let expanded = "";           // the term chosen in the bar, kept across answers
function expandTerm(term, chosen = true) {
  expanded = term.name;
  const box = $("#bar-detail");
  // a term whose only part is itself (the KV cache, gradients) has no parts to show
  const parts = (term.children || []).filter((c) => c.bytes > 0 && !(term.children.length === 1 && c.name === term.name));
  const legend = parts.map((c, i) => make("li", {}, make("span", { class: "swatch", style: `background:${partColour(c.name, i)}` }),
    `${c.name}: ${fmt(c.bytes)}`));
  const sub = make("div", { class: "bar sub-bar", role: "group", "aria-label": `Parts of ${term.name}` });
  if (parts.length) drawBar(sub, parts, 0, term.bytes, null, partColour);
  box.replaceChildren(make("p", { text: `${term.name}: ${fmt(term.bytes)}${parts.length ? `, in ${parts.length} part(s)` : ""}` }),
    ...(parts.length ? [sub, make("ul", { class: "legend" }, ...legend)] : []));
  box.hidden = false;
  for (const seg of $("#bar").querySelectorAll(".seg")) seg.setAttribute("aria-pressed", String(seg.dataset.term === term.name));
  const det = [...document.querySelectorAll("#table details")].find((d) => d.dataset.term === term.name);
  if (det && chosen) { det.open = true; det.scrollIntoView({ block: "nearest" }); }
}

// After a new answer: the chosen term again, with its new numbers, or nothing if it is gone.
function refreshExpanded(top) {
  const term = top.find((c) => c.name === expanded);
  if (term) { expandTerm(term, false); return; }
  expanded = "";
  $("#bar-detail").hidden = true;
}

// Which rank the answer is for, and what the recipe leaves out or puts on the host.
function renderLayoutLine(res) {
  const parts = [];
  const l = res.layout;
  if (l && l.gpus > 1) {
    const d = l.degrees;
    parts.push(`${l.gpus} GPUs = data ${d.data} × tensor ${d.tensor} × pipeline ${d.pipeline} × context ${d.context} × expert ${d.expert} (${l.recipe}). Per GPU: ${l.most_loaded.description}.`);
  }
  parts.push(`Model states on this GPU: ${fmt(res.model_states_bytes)}.`);
  if (res.host_bytes) parts.push(`Host memory per node (offload): ${fmt(res.host_bytes)}.`);
  if (res.not_estimated) parts.push(`Not estimated by this recipe: ${res.not_estimated.join(", ")}.`);
  text($("#layout-line"), parts.join(" "));
}

function renderSolved(res) {
  const gaps = (res.max_seq_len_gaps || []).map(([a, b]) => `${a.toLocaleString()}–${b.toLocaleString()}`);
  text($("#solver"), `Largest batch that fits: ${res.max_batch_size}. Longest sequence that fits: ${res.max_seq_len.toLocaleString()} tokens.`
    + (gaps.length ? ` Sequences of ${gaps.join(" and ")} tokens do not fit, although longer ones do: the attention kernel changes past the sliding window.` : ""));
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
  const plans = res.fit ? res.fit.plans : [];
  if (plans.length) {
    // The cheapest combinations that fit, from the core's search; each applies as one change of the form.
    $("#suggestions").replaceChildren(...plans.map((p, i) => {
      const b = make("button", { type: "button", text: `Apply plan ${i + 1}` });
      b.addEventListener("click", () => applyChange(nest(p.set)));
      return make("li", { class: "plan", "data-testid": "fit-plan" }, b, ` → ${fmt(p.device_total_bytes)} (${p.verdict}, ${fmt(p.headroom_bytes)} to spare)`
        + (p.host_bytes ? `; ${fmt(p.host_bytes)} of host memory` : ""),
        make("ul", {}, ...p.changes.map((c) => make("li", { text: `${c.change}: ${c.cost}` }))));
    }));
    return;
  }
  if (res.fit && res.fit.message) text($("#solver"), `${$("#solver").textContent} ${res.fit.message}.`);
  $("#suggestions").replaceChildren(...res.suggestions.map((s) => {
    const b = make("button", { type: "button", text: s.change });
    b.addEventListener("click", () => applyChange(s.set));
    return make("li", {}, b, ` → ${fmt(s.device_total_bytes)}${s.fits ? " (fits)" : ""}; ${s.cost}`);
  }));
}

// "workload.batch_size" -> {workload: {batch_size}}: the fit plans' flat paths in applyChange's shape.
function nest(flat) {
  const out = {};
  for (const [path, value] of Object.entries(flat)) {
    const keys = path.split(".");
    let node = out;
    for (const k of keys.slice(0, -1)) node = node[k] = node[k] || {};
    node[keys.at(-1)] = value;
  }
  return out;
}

// A suggestion's change, in request paths, applied to the state through the same parameter table.
function applyChange(set) {
  for (const [param, path] of Object.entries(PARAMS)) {
    const [group, ...rest] = path.split(".");
    let node = set[group];
    for (const k of rest) node = node === undefined ? undefined : node[k];
    // an object (a PEFT adapter config) lives in the state as its JSON text, as the form shows it
    if (node !== undefined) state[param] = node && typeof node === "object" && !Array.isArray(node) ? JSON.stringify(node) : node;
  }
  if (set.precision && "autocast" in set.precision && !set.precision.autocast && set.precision.weights) state.w = set.precision.weights;
  stateToForm();
  update();
}

// ---- how many GPUs -------------------------------------------------------------
const PLAN_COLUMNS = [["dp", (r) => r.degrees.data], ["tp", (r) => r.degrees.tensor], ["pp", (r) => r.degrees.pipeline],
  ["cp", (r) => r.degrees.context], ["ep", (r) => r.degrees.expert], ["ZeRO", (r) => r.zero_stage],
  ["recompute", (r) => r.recompute], ["micro-batch × acc.", (r) => r.micro_batch * 1e6 + r.gradient_accumulation, (r) => `${r.micro_batch} × ${r.gradient_accumulation}`],
  ["per GPU", (r) => r.device_total_bytes, (r) => fmt(r.device_total_bytes)],
  ["headroom", (r) => r.headroom_bytes, (r) => fmt(r.headroom_bytes)],
  ["pipeline bubble", (r) => r.throughput.bubble_fraction, (r) => `${(100 * r.throughput.bubble_fraction).toFixed(1)}%`],
  ["step time (proxy)", (r) => r.throughput.relative_step_time, (r) => r.throughput.relative_step_time.toFixed(2)],
  ["fits", (r) => (r.fits ? 1 : 0), (r) => (r.fits ? "yes" : "no")]];
let planRows = [];
let planSort = { column: 9, descending: true };

async function findGpuCount() {
  text($("#plan-status"), "Searching every layout…");
  const { response } = await ask(toPlanRequest(state, catalog), PLAN_TIMEOUT_MS);
  if (response.status !== "ok") { text($("#plan-status"), errorText(response, "The search did not finish.")); return; }
  const plan = response.result.plan;
  text($("#plan-status"), "");
  const rec = plan.recommended;
  if (!rec) {
    $("#plan-answer").replaceChildren(make("p", { class: "verdict does-not-fit", text: plan.message || "No layout fits." }));
    planRows = [];
  } else {
    const d = rec.degrees;
    $("#plan-answer").replaceChildren(make("p", { "data-testid": "gpu-count", class: "verdict fits",
      text: `${plan.gpus} GPU${plan.gpus > 1 ? "s" : ""}` }),
      make("p", { text: `Recommended: data ${d.data} × tensor ${d.tensor} × pipeline ${d.pipeline} × context ${d.context} × expert ${d.expert}, ZeRO ${rec.zero_stage}, recomputation ${rec.recompute}: ${fmt(rec.device_total_bytes)} per GPU (${plan.count} valid layouts of ${plan.gpus} GPUs).` }));
    planRows = plan.layouts;
  }
  renderPlanTable();
}

function renderPlanTable() {
  if (!planRows.length) { $("#plan-table").replaceChildren(); return; }
  const [, key] = PLAN_COLUMNS[planSort.column];
  const rows = [...planRows].sort((a, b) => (planSort.descending ? key(b) - key(a) : key(a) - key(b)) || 0);
  const head = make("tr", {}, ...PLAN_COLUMNS.map(([label], i) => {
    const b = make("button", { type: "button", text: label + (i === planSort.column ? (planSort.descending ? " ▼" : " ▲") : "") });
    b.addEventListener("click", () => { planSort = { column: i, descending: i === planSort.column ? !planSort.descending : true }; renderPlanTable(); });
    return make("th", { scope: "col", "aria-sort": i === planSort.column ? (planSort.descending ? "descending" : "ascending") : "none" }, b);
  }), make("th", { scope: "col", text: "" }));
  const body = rows.map((r) => {
    const use = make("button", { type: "button", text: "Use" });
    use.addEventListener("click", () => applyLayout(r));
    return make("tr", {}, ...PLAN_COLUMNS.map(([, k, show]) => make("td", { class: "num", text: show ? show(r) : String(k(r)) })), make("td", {}, use));
  });
  $("#plan-table").replaceChildren(make("table", { class: "layouts" }, make("thead", {}, head), make("tbody", {}, ...body)));
}

function applyLayout(r) {
  const p = r.parallelism;
  Object.assign(state, { dp: p.data_parallel, tp: p.tensor_parallel, pp: p.pipeline_parallel, cp: p.context_parallel,
    ep: p.expert_parallel, sp: p.sequence_parallel, zero: p.zero_stage, rc: p.recompute, ga: p.gradient_accumulation,
    batch: r.micro_batch });
  stateToForm();
  update();
}

// ---- compare -------------------------------------------------------------------
async function renderCompare() {
  const box = $("#compare");
  if (!state.pins.length) { box.replaceChildren(); return; }
  const rows = [];
  const answers = [];
  for (const [i, pin] of state.pins.entries()) {
    const { state: s } = await parseQuery(pin, catalog);
    const { response } = await ask(toRequest(s, catalog, false));
    const label = `${s.source === "catalog" ? s.model : s.source}, ${s.mode}, b=${s.batch}, s=${s.seq}, ${s.gpu}`;
    const cell = response.status === "ok" ? `${fmt(response.result.device_total_bytes)} ${response.result.fits ? "fits" : "does not fit"}`
      : (response.errors || [{ message: "not computed" }])[0].message;
    if (response.status === "ok") answers.push([label, response.result]);
    const rm = make("button", { type: "button", text: "Unpin" });
    rm.addEventListener("click", () => { state.pins.splice(i, 1); update(); });
    const open = make("a", { href: `?${pin}`, text: label });
    rows.push(make("tr", {}, make("td", {}, open), make("td", { class: "num", text: cell }), make("td", {}, rm)));
  }
  // The pinned answers as bars on one scale, each with its own card's capacity; the table is their text.
  const scale = Math.max(1, ...answers.map(([, r]) => Math.max(r.device_total_bytes, r.gpu.memory_bytes)));
  const bars = answers.map(([label, r]) => {
    const bar = make("div", { class: "bar", role: "img", "aria-label": `${label}: ${fmt(r.device_total_bytes)} of ${fmt(r.gpu.memory_bytes)}` });
    drawBar(bar, topTerms(r.breakdown), r.gpu.memory_bytes, scale, null);
    return make("figure", { class: "pin-bar", "data-testid": "pin-bar" }, make("figcaption", { text: `${label}: ${fmt(r.device_total_bytes)}` }), bar);
  });
  box.replaceChildren(make("h2", { text: "Compare" }), ...bars, make("table", {}, make("tbody", {}, ...rows)));
}

// ---- a model by its Hugging Face id ---------------------------------------------
// Only on the user's action (the button, or opening a link that names an id): GET the repository's
// config.json, at most the request's size limit, then the core reads it as a pasted config.
const HUB_TIMEOUT_MS = 15000;
const hubCache = new Map();                 // id -> config text fetched in this page (back/forward needs no refetch)
async function fetchHub(id) {
  const hub = catalog.request.hub;
  if (!new RegExp(hub.id_pattern).test(id)) { text($("#hub-status"), `“${id.slice(0, 80)}” is not a Hugging Face model id (owner/name).`); return false; }
  text($("#hub-status"), `Fetching ${id}/config.json from huggingface.co…`);
  const limit = catalog.request.limits.max_json_chars;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), HUB_TIMEOUT_MS);
  let body;
  try {
    const res = await fetch(hub.config_url.replace("{id}", id), { signal: abort.signal, credentials: "omit", redirect: "follow" });
    if (res.status === 401 || res.status === 403) throw new Error(`${id} is gated or private (HTTP ${res.status}): accept its licence on the Hub, download its config.json and paste or drop it here`);
    if (res.status === 404) throw new Error(`the Hub has no repository ${id} with a config.json (HTTP 404)`);
    if (!res.ok) throw new Error(`the Hub answered HTTP ${res.status}`);
    body = await readAtMost(res.body.getReader(), limit, `its config.json is larger than ${limit.toLocaleString()} bytes`);
  } catch (err) {
    const why = err.name === "AbortError" ? `huggingface.co did not answer within ${HUB_TIMEOUT_MS / 1000} s`
      : err instanceof TypeError ? "could not reach huggingface.co (offline, or blocked by the network)" : err.message;
    text($("#hub-status"), `Could not fetch ${id}: ${why}. You can paste or drop its config.json below instead.`);
    return false;
  } finally {
    clearTimeout(timer);
  }
  hubCache.set(id, body);
  state.source = "config";
  state.cfg = body;
  state.hub = id;
  $("#config-text").value = body;
  text($("#hub-status"), `Fetched ${id}/config.json (${body.length.toLocaleString()} characters).`);
  return true;
}
$("#hub-fetch").addEventListener("click", async () => {
  const id = $("#hub-id").value.trim();
  fromURL = false;
  if (await fetchHub(id)) { stateToForm(); update(); }
});

// ---- sweeps: one request to the core, every point; drawn as stacked areas by term -------------
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}
async function runSweep() {
  const field = $("#sweep-field").value;
  text($("#sweep-status"), "Computing…");
  const req = toRequest(state, catalog, false);
  req.sweep = { field };
  const { response } = await ask(req);
  if (response.status !== "ok") {
    text($("#sweep-status"), errorText(response, "The sweep did not finish."));
    return;
  }
  text($("#sweep-status"), "");
  drawSweep(response.result.sweep);
}
function drawSweep(sw) {
  const pts = sw.points.filter((p) => !p.error);
  if (!pts.length) { $("#sweep-chart").replaceChildren(); return; }
  const W = 640, H = 260, L = 56, B = 30, T = 10, R = 10;
  const names = pts[0].terms.map((t) => t.name);
  const top = Math.max(sw.capacity_bytes, ...pts.map((p) => p.device_total_bytes)) * 1.05;
  const x = (i) => L + (pts.length === 1 ? 0 : (i * (W - L - R)) / (pts.length - 1));
  const y = (b) => H - B - (b / top) * (H - B - T);
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `Device memory against ${sw.field}; the table below holds the same numbers`, class: "sweep" });
  const base = pts.map(() => 0);
  names.forEach((name, k) => {
    const lower = base.slice();
    pts.forEach((p, i) => { base[i] += p.terms[k].bytes; });
    const d = pts.map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(base[i]).toFixed(1)}`).join("")
      + pts.map((p, i) => `L${x(pts.length - 1 - i).toFixed(1)},${y(lower[pts.length - 1 - i]).toFixed(1)}`).join("") + "Z";
    const area = svg("path", { d, fill: COLORS[name] || "#999", "fill-opacity": "0.85" });
    area.append(Object.assign(svg("title"), { textContent: name }));
    chart.append(area);
  });
  const cap = svg("line", { x1: L, x2: W - R, y1: y(sw.capacity_bytes), y2: y(sw.capacity_bytes), class: "capacity", "data-testid": "capacity-line" });
  chart.append(cap, Object.assign(svg("text", { x: W - R, y: y(sw.capacity_bytes) - 4, "text-anchor": "end", class: "axis" }), { textContent: `GPU: ${fmt(sw.capacity_bytes)}` }));
  const mark = sw.oom_at ?? sw.fits_from;
  const mi = pts.findIndex((p) => p.value === mark);
  if (mi >= 0) {
    chart.append(svg("line", { x1: x(mi), x2: x(mi), y1: T, y2: H - B, class: "oom", "data-testid": "oom-mark" }),
      Object.assign(svg("text", { x: x(mi) + 4, y: T + 12, class: "axis" }), { textContent: sw.oom_at ? `out of memory from ${mark}` : `fits from ${mark}` }));
  }
  pts.forEach((p, i) => {
    chart.append(Object.assign(svg("text", { x: x(i), y: H - 10, "text-anchor": "middle", class: "axis" }), { textContent: String(p.value) }));
    const hit = svg("rect", { x: x(i) - 8, y: T, width: 16, height: H - B - T, class: "hit", tabindex: "0", "data-value": String(p.value) });
    const show = () => text($("#sweep-point"), `${sw.field} ${p.value}: ${fmt(p.device_total_bytes)}${p.fits ? "" : " (does not fit)"} = `
      + p.terms.filter((t) => t.bytes).map((t) => `${t.name} ${fmt(t.bytes)}`).join(" + "));
    hit.addEventListener("mouseenter", show);
    hit.addEventListener("focus", show);
    chart.append(hit);
  });
  chart.append(Object.assign(svg("text", { x: 4, y: T + 10, class: "axis" }), { textContent: fmt(top / 1.05).replace(/\.\d+/, "") }));
  $("#sweep-chart").replaceChildren(chart);
  const head = make("tr", {}, make("th", { scope: "col", text: sw.field }), make("th", { scope: "col", text: "device total" }),
    ...names.map((n) => make("th", { scope: "col", text: n })));
  $("#sweep-table").replaceChildren(make("table", { id: "sweep-rows" }, make("thead", {}, head), make("tbody", {},
    ...pts.map((p) => make("tr", {}, make("td", { text: String(p.value) }), make("td", { class: "num", text: fmt(p.device_total_bytes) }),
      ...p.terms.map((t) => make("td", { class: "num", text: fmt(t.bytes) })))))));
}

// ---- checking against the user's own run ------------------------------------------
// The pasted text goes to the core as it is (the core bounds and parses it); the page only renders.
let checkRecordUrl = null;
async function runCheck() {
  const textValue = $("#measured-text").value;
  const limit = catalog.request.limits.max_measured_chars;
  if (textValue.length > limit) { text($("#check-status"), `The text is longer than ${limit.toLocaleString()} characters; paste the memory summary or the nvidia-smi table only.`); return; }
  text($("#check-status"), "Comparing…");
  const req = toRequest(state, catalog, false);
  req.measured = { text: textValue };
  const { response } = await ask(req);
  if (response.status !== "ok") {
    text($("#check-status"), errorText(response, "The comparison did not finish."));
    $("#check-answer").replaceChildren();
    return;
  }
  text($("#check-status"), "");
  const ck = response.result.check;
  const pct = (f) => `${f >= 0 ? "+" : ""}${(100 * f).toFixed(1)}%`;
  const rows = ck.rows.map((r) => make("tr", {}, make("th", { scope: "row", text: r.quantity }),
    make("td", { class: "num", text: fmt(r.measured_bytes) + (r.measured_is_lower_bound ? " (at least)" : "") }),
    make("td", { class: "num", text: fmt(r.estimated_bytes) }), make("td", { class: "num", text: pct(r.gap_fraction || 0) }),
    make("td", { class: "src", text: r.source })));
  const table = make("table", { id: "check-table" },
    make("thead", {}, make("tr", {}, ...["", "measured", "estimated", "gap", "read from"].map((h) => make("th", { scope: "col", text: h })))),
    make("tbody", {}, ...rows));
  const parts = [make("p", { "data-testid": "check-verdict", class: `verdict ${ck.verdict === "agrees" || ck.verdict.startsWith("agrees") ? "fits" : "at-risk"}`,
    text: ck.verdict }), make("p", { text: `Read: ${ck.formats.join(", ")}. ${ck.agreement || `Within ±${(100 * ck.tolerance_fraction).toFixed(0)}% counts as agreement`}.` }), table];
  if (ck.explanations.length) {
    parts.push(make("p", { text: "What most likely explains the gap:" }),
      make("ul", { id: "check-explanations" }, ...ck.explanations.map((e) => make("li", { text: `${e.assumption}: ${e.text}` }))));
  }
  for (const n of ck.notes) parts.push(make("p", { class: "note", text: n }));
  if (checkRecordUrl) URL.revokeObjectURL(checkRecordUrl);
  checkRecordUrl = null;
  if (ck.record) {
    checkRecordUrl = URL.createObjectURL(new Blob([JSON.stringify(ck.record) + "\n"], { type: "application/json" }));
    parts.push(make("p", {}, make("a", { href: checkRecordUrl, download: `${ck.record.id}.jsonl`, id: "check-record" },
      "Download this run as a calibration record"), ` (${ck.record_note}; send it to us to widen the measured set)`));
  } else {
    parts.push(make("p", { class: "note", text: `No calibration record: ${ck.record_note}.` }));
  }
  $("#check-answer").replaceChildren(...parts);
}

// ---- the update loop --------------------------------------------------------------
let pushing = false;
let fromURL = false;          // the state came from a link: a value the core rejects falls back to its default

async function update({ push = true } = {}) {
  const query = await toQuery(state, catalog);
  if (push && !pushing && `?${query}` !== location.search && !(query === "" && location.search === "")) {
    history.pushState(null, "", query ? `?${query}` : location.pathname);
  }
  if (!workerReady) return;
  for (let attempt = 0; attempt < 8; attempt++) {
    const { id, response } = await ask(toRequest(state, catalog, false));
    if (id < latestShown) return;
    if (response.status === "timeout") { if (response.repeated) noteRepeated("The estimate"); return; }
    latestShown = id;
    if (response.status === "ok") {
      lastGood = structuredClone(state);
      const serving = state.mode === "serve" && response.result.engine && response.result.engine !== "hf";
      if (serving) renderServe(response.result); else renderMain(response.result);
      document.body.dataset.query = await toQuery(state, catalog);     // which configuration the result is for
      document.body.dataset.computed = String(id);
      if (!document.body.dataset.firstResultMs) document.body.dataset.firstResultMs = String(Math.round(performance.now()));
      const solvedRequest = toRequest(state, catalog, true);
      if (!serving && !response.result.fits) solvedRequest.fit = { limit: 5 };      // the cheapest combinations that fit
      const solved = await ask(solvedRequest);
      if (solved.id < latestShown) return;
      if (solved.response.repeated) noteRepeated(describeRequest("estimate", solvedRequest));
      if (solved.response.status !== "ok") return;
      if (serving) renderServeSolved(solved.response.result);
      else if (solved.response.result.explanations) renderSolved(solved.response.result);
      renderCompare();
      return;
    }
    if (!rejected(response.errors[0])) return;
  }
}

// A request that timed out before is not sent again: say so, once, beside the other messages.
function noteRepeated(what) {
  const line = `${what} took too long on this configuration before and is not run again; change a setting to continue.`;
  const messages = [...$("#messages").children].map((c) => c.textContent);
  if (!messages.some((m) => m.startsWith(what))) showMessages([...messages, line]);
}

// The core refused the request: say so next to the field it names. A value from a link falls back
// to its default (and the page computes again); a typed value stays, and the last result stays shown.
function rejected(err) {
  const param = paramOf(err.field);
  const where = param ? `“${param}” (${err.field})` : err.field;
  if (!param) {
    // no control holds the field at fault (the request as a whole, say): name it and keep every setting
    showMessages([`${err.field}: ${err.message}`]);
    return false;
  }
  if (fromURL || !lastGood) {
    const d = defaults(catalog);
    const messages = [...$("#messages").children].map((c) => c.textContent);
    messages.push(`URL parameter ${where}: ${err.message}; using the default.`);
    if (param === "cfg" || param === "dims") { state.source = "catalog"; state[param] = null; }
    else if (param in d && state[param] !== d[param]) state[param] = d[param];
    else { state = { ...d, pins: state.pins }; messages.push("Using the default configuration."); }
    showMessages(messages);
    stateToForm();
    fieldError(param, err.message);
    return true;
  }
  if (param === "cfg") showMessages([`config.json: ${err.message}`]);      // the config has no control of its own to sit by
  else fieldError(param, err.message);
  state = structuredClone(lastGood);
  return false;
}

async function loadFromURL() {
  const { state: s, messages } = await parseQuery(location.search, catalog);
  state = s;
  if (state.hub && hubCache.has(state.hub)) state.cfg = hubCache.get(state.hub);
  fromURL = true;
  showMessages(messages);
  stateToForm();
  for (const m of messages) fieldError(m.param, m.text);
}

form.addEventListener("input", (event) => {
  const el = event.target;
  if (el.id === "model-search") { fillPickers(el.value); if ($("#model").value) state.model = $("#model").value; }
  else if (el.id === "config-file") return;
  else if (!readControl(el)) return;
  fromURL = false;
  showMessages([]);
  syncVisibility();
  update();
});
form.addEventListener("submit", (e) => e.preventDefault());
$("#config-file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (file) { $("#config-text").value = await file.slice(0, catalog.request.limits.max_json_chars + 1).text(); readControl($("#config-text")); update(); }
});
$("#config-text").addEventListener("dragover", (e) => e.preventDefault());
$("#config-text").addEventListener("drop", async (e) => {
  e.preventDefault();
  const file = e.dataTransfer.files[0];
  if (file) { $("#config-text").value = await file.slice(0, catalog.request.limits.max_json_chars + 1).text(); state.source = "config"; readControl($("#config-text")); stateToForm(); update(); }
});
// A training config the user already has (issue 23): the core reads it into the page's link, listing the
// fields it used, read and ignored; the page then loads that link as it loads any other.
async function readTrainingConfig() {
  const body = $("#train-config-text").value;
  if (!body.trim()) return;
  const limit = catalog.request.limits.max_json_chars;
  if (body.length > limit) { text($("#train-config-status"), `The text is longer than ${limit.toLocaleString()} characters.`); return; }
  text($("#train-config-status"), "Reading…");
  const { response } = await ask(JSON.stringify({ text: body, base: toRequest(state, catalog, false) }), REQUEST_TIMEOUT_MS, "from_config");
  if (response.status !== "ok") { text($("#train-config-status"), errorText(response, "The config could not be read.")); return; }
  const r = response.result;
  history.pushState(null, "", `?${r.query}`);
  await loadFromURL();
  fromURL = false;
  await update({ push: false });
  text($("#train-config-status"), `Read as a ${r.kind} config: ${r.used.length} fields used.`);
  const line = (label, items) => (items.length ? [make("p", {}, make("strong", { text: `${label}: ` }), items.join(", "))] : []);
  $("#train-config-fields").replaceChildren(
    ...line("Used", r.used.map((u) => `${u.field} → ${u.sets} = ${JSON.stringify(u.value)}`)),
    ...line("Read (nothing to set)", r.read_only),
    ...line("Not on this page (the command line reads them)", r.not_on_page),
    ...line("Ignored", r.ignored),
    ...r.notes.map((n) => make("p", { class: "note", text: n })));
}
$("#train-config-read").addEventListener("click", readTrainingConfig);
$("#train-config-text").addEventListener("dragover", (e) => e.preventDefault());
$("#train-config-text").addEventListener("drop", async (e) => {
  e.preventDefault();
  const file = e.dataTransfer.files[0];
  if (file) { $("#train-config-text").value = await file.slice(0, catalog.request.limits.max_json_chars + 1).text(); readTrainingConfig(); }
});
// A dropped adapter_config.json fills the PEFT field (the core reads and checks it).
const peftBox = form.elements.peft;
peftBox.addEventListener("dragover", (e) => e.preventDefault());
peftBox.addEventListener("drop", async (e) => {
  e.preventDefault();
  const file = e.dataTransfer.files[0];
  if (file) { peftBox.value = await file.slice(0, catalog.request.limits.max_json_chars + 1).text(); if (readControl(peftBox)) update(); }
});
for (const b of document.querySelectorAll(".unit-toggle button")) {
  b.addEventListener("click", () => { state.unit = b.dataset.unit; stateToForm(); update(); });
}
$("#plan").addEventListener("click", findGpuCount);
$("#check-run").addEventListener("click", runCheck);
$("#sweep-run").addEventListener("click", runSweep);
$("#copy").addEventListener("click", async () => {
  try { await navigator.clipboard.writeText(location.href); text($("#copied"), "Link copied."); }
  catch { text($("#copied"), "Copy this address from the address bar."); }
});
// Copy as command and the exports: the core writes the command line, the link and the Markdown.
async function linksFor() {
  const { response } = await ask(toRequest(state, catalog, false), REQUEST_TIMEOUT_MS, "links");
  if (response.status !== "ok") { text($("#copied"), errorText(response, "")); return null; }
  return response.result;
}
$("#copy-command").addEventListener("click", async () => {
  const links = await linksFor();
  if (!links) return;
  text($("#command-line"), links.command);
  $("#command-line").hidden = false;
  try { await navigator.clipboard.writeText(links.command); text($("#copied"), "Command copied."); }
  catch { text($("#copied"), "Copy the command shown below."); }
});
function download(name, type, body) {
  const url = URL.createObjectURL(new Blob([body], { type }));
  const a = make("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
$("#export-json").addEventListener("click", async () => {
  const { response } = await ask(toRequest(state, catalog, false));
  if (response.status === "ok") download("estimate.json", "application/json", JSON.stringify(response.result, null, 1));
});
$("#export-md").addEventListener("click", async () => {
  const links = await linksFor();
  if (links) download("estimate.md", "text/markdown", links.markdown);
});
$("#pin").addEventListener("click", async () => {
  const q = await toQuery(state, catalog, { withPins: false });
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

// The worker (started by boot.js) comes first: Python's start-up is the long pole, the form is built meanwhile.
startWorker();
catalog = await (await fetch("catalog.json")).json();
registerParams(catalog);
buildServeFields();
state = defaults(catalog);
buildForm();
await loadFromURL();
if (state.hub && !state.cfg) {             // a shared link with a Hub id: fetch it again (the link is the action)
  $("#hub-id").value = state.hub;
  if (!(await fetchHub(state.hub))) { state.source = "catalog"; state.hub = null; }
  stateToForm();
}
formReady = true;
update({ push: false });
