import { PARAMS, applies, paramOf, parseValue } from "./state.js";
import { $, form, text, make, app } from "./dom.js";
import { gpuCount, gpuCountParam } from "./pickers.js";

// ---- form <-> state ------------------------------------------------------------
export function field(param) { return app.catalog.request.fields[PARAMS[param]]; }

// A control for every URL parameter the page's HTML has none for, read from the schema: the serving fields
// in their fieldset (the engine picks which show), and any other field declared with a parameter in a
// fieldset of its own, so that a field added to the schema has its control without an edit here.
export function buildServeFields() {
  const serving = [];
  const more = [];
  for (const [param, path] of Object.entries(PARAMS)) {
    if (form.querySelector(`[name="${param}"]`)) continue;
    const f = app.catalog.request.fields[path];
    (f.modes && f.modes.length === 1 && f.modes[0] === "serve" ? serving : more).push(control(param, f));
  }
  $("#serve-fields").replaceChildren(...serving);
  if (more.length) $("#serve-fieldset").after(make("fieldset", {}, make("legend", { text: "More settings" }), make("div", { class: "grid" }, ...more)));
}

function control(param, f) {
  const label = param.replace(/_/g, " ");
  const flag = serveFlag(param, f);
  const named = (...before) => [...before, flag ? make("span", { class: "flag", text: flag }) : "", ` ${label} `];
  let el;
  if (f.type === "bool") {
    el = make("label", { class: "check" }, ...named(make("input", { name: param, type: "checkbox" }), " "));
  } else if (f.type === "choice") {
    el = make("label", {}, ...named(), make("select", { name: param }));
  } else {
    const input = make("input", { name: param, type: ["int", "number"].includes(f.type) ? "number" : "text",
      inputmode: f.type === "int" ? "numeric" : "decimal", placeholder: f.nullable ? "default" : "" });
    if (f.type === "number") input.step = "any";
    el = make("label", {}, ...named(), input);
  }
  if (f.doc) el.title = f.doc;
  return el;
}

// The engine flag users know for a serving field (-ngl, -c, --max-model-len): the core's table of each
// engine's parser (catalog.engine_flags), else a flag the field's doc starts with.
function serveFlag(param, f) {
  const known = (app.catalog.engine_flags || {})[param];
  if (known) return known;
  const m = /^(--?[a-z][a-z0-9-]*)\b/.exec(f.doc || "");
  return m ? m[1] : "";
}

export function buildForm() {
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

// The model and GPU lists, whole: the searches beside them (pickers.js) list matches to pick from.
export function fillPickers() {
  const sel = $("#model");
  const groups = new Map();
  for (const m of app.catalog.models) {
    if (!groups.has(m.family)) groups.set(m.family, make("optgroup", { label: m.family }));
    groups.get(m.family).append(make("option", { value: m.id, text: `${m.id} (${(m.params / 1e9).toFixed(m.params < 1e9 ? 2 : 1)} B)` }));
  }
  if (!sel.options.length) sel.replaceChildren(...groups.values());
  sel.value = app.state.model;
  const gpu = $("#gpu");
  if (!gpu.options.length) {
    const byVendor = new Map();
    for (const g of app.catalog.gpus) {
      if (!byVendor.has(g.vendor)) byVendor.set(g.vendor, make("optgroup", { label: g.vendor }));
      byVendor.get(g.vendor).append(make("option", { value: g.id, text: `${g.name} (${(g.memory_bytes / 2 ** 30).toFixed(1)} GiB)` }));
    }
    gpu.replaceChildren(...byVendor.values());
  }
}

export function stateToForm() {
  const f = form.elements;
  for (const r of form.querySelectorAll('input[name="source"]')) r.checked = r.value === app.state.source;
  if (app.state.hub) $("#hub-id").value = app.state.hub;
  fillPickers();
  for (const param of Object.keys(PARAMS)) {
    const el = f[param];
    if (!el) continue;
    if (el.type === "checkbox") el.checked = Boolean(app.state[param]);
    else el.value = app.state[param] === null ? "" : String(app.state[param]);
  }
  f.gpu.value = app.state.gpu;
  $("#gpu-n").value = String(gpuCount(app.state));
  if (app.state.sweep) $("#sweep-field").value = app.state.sweep;
  $("#sweep-stop").value = app.state.sweep_to ? String(app.state.sweep_to) : "";
  fieldError("gpu-n", "");
  text($("#w-note"), impliedNote("w"));
  if (app.state.cfg !== null) $("#config-text").value = app.state.cfg;
  if (app.state.dims) {
    f.d_layers.value = app.state.dims.n_layers; f.d_hidden.value = app.state.dims.hidden_size; f.d_ffn.value = app.state.dims.ffn_size;
    f.d_heads.value = app.state.dims.n_heads; f.d_kv.value = app.state.dims.n_kv_heads; f.d_vocab.value = app.state.dims.vocab_size;
    f.d_tied.checked = app.state.dims.tied_embeddings;
  }
  for (const b of document.querySelectorAll(".unit-toggle button")) b.setAttribute("aria-pressed", String(b.dataset.unit === app.state.unit));
  for (const param of Object.keys(PARAMS)) fieldError(param, "");
  syncVisibility();
}

// The value another field gives this one when it is left at its default (the core's request.implied: mixed
// precision keeps fp32 master weights), said beside it.
function impliedNote(param) {
  const rule = (app.catalog.request.implied || {})[PARAMS[param]];
  const by = rule && paramOf(rule.when);
  if (!by || app.state[by] === null || !applies(app.catalog, by, app.state.mode)) return "";
  return `${rule.value} master weights (mixed precision ${app.state[by]})`;
}

export function fieldError(param, message) {
  const err = document.getElementById(`err-${param}`);
  if (err) text(err, message);
  const el = form.elements[param];
  if (el && el.setAttribute) { if (message) el.setAttribute("aria-invalid", "true"); else el.removeAttribute("aria-invalid"); }
}

// Read the control that changed into the state, if its value is valid; otherwise say why next to it.
export function readControl(el) {
  const param = el.name;
  if (param === "source") { app.state.source = form.querySelector('input[name="source"]:checked').value; return true; }
  if (param === "model") { app.state.model = el.value || app.state.model; return true; }
  if (param === "gpu") { app.state.gpu = el.value; return true; }
  if (param === "config-text" || el.id === "config-text") { app.state.cfg = el.value.trim() || null; app.state.hub = null; return true; }
  if (el.id === "hub-id") return false;                           // fetched on the button, not on typing
  if (param.startsWith("d_")) { readDims(); return true; }
  if (!PARAMS[param]) return false;
  const raw = el.type === "checkbox" ? (el.checked ? "1" : "0") : el.value;
  if (param === "mem" && raw === "") { app.state.mem = null; fieldError(param, ""); return true; }
  const r = parseValue(field(param), raw);
  if (!r.ok) { fieldError(param, `${raw === "" ? "A value" : `“${raw.slice(0, 30)}”`} ${r.why}.`); return false; }
  fieldError(param, "");
  app.state[param] = r.value;
  return true;
}

export function readDims() {
  const f = form.elements;
  const n = (el) => (/^\d{1,9}$/.test(el.value) ? Number(el.value) : 0);
  app.state.dims = { n_layers: n(f.d_layers), hidden_size: n(f.d_hidden), ffn_size: n(f.d_ffn), n_heads: n(f.d_heads),
    n_kv_heads: n(f.d_kv), vocab_size: n(f.d_vocab), tied_embeddings: f.d_tied.checked };
}

export function syncVisibility() {
  for (const el of form.querySelectorAll("[data-source]")) el.hidden = el.dataset.source !== app.state.source;
  for (const param of Object.keys(PARAMS)) {
    const el = form.elements[param];
    if (!el) continue;
    const box = el.closest("label") || el;
    box.hidden = !applies(app.catalog, param, app.state.mode, app.state.engine);
  }
  $("#peft-hub").hidden = form.elements.peft.closest("label").hidden;    // the adapter's Hub fetch goes with its field
  const allowed = app.catalog.request.weights_by_mode[app.state.mode] || [];
  for (const opt of form.elements.w.options) opt.disabled = !allowed.includes(opt.value);
  // A fieldset none of whose fields apply to the mode is hidden with them.
  for (const fs of form.querySelectorAll("fieldset")) {
    const controls = [...fs.querySelectorAll("[name]")].filter((el) => PARAMS[el.name]);
    if (controls.length) fs.hidden = controls.every((el) => (el.closest("label") || el).hidden);
  }
  $("#gpu-n").closest("label").hidden = app.state.mode === "inference" || !applies(app.catalog, gpuCountParam(app.state), app.state.mode, app.state.engine);
  $("#gpu-count").hidden = app.state.mode === "serve" || !applies(app.catalog, "recipe", app.state.mode);
  // the hf engine is transformers' generate: its answer is the inference result, without an engine's KV pool
  $("#serve-line").hidden = app.state.mode !== "serve" || app.state.engine === "hf";
  $("#suggestions").previousElementSibling.hidden = app.state.mode === "serve";
}
