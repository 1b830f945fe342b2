// The page's configuration and its URL form. What is valid (types, ranges, choices, defaults and
// the modes a field applies to) comes from the core's schema, which the build writes into
// catalog.json (pycore.api.schema); this file only maps URL parameters to request fields and
// reads values as the schema's types. The core checks them: a value it rejects is named by its
// error, which app.js shows next to the field (and a link's value falls back to its default).

// URL parameter -> request path, in the order they appear in a link: the core's table
// (pycore.links.URL_PARAMS, in catalog.json), filled in once the catalog is loaded. Each field declares its
// parameter in the schema; the serving workload's fields keep their engine's own names in links
// (?mode=serve&engine=vllm&max_model_len=32768).
export const PARAMS = {};
export function registerParams(catalog) {
  if (!catalog.request.url_params) throw new Error("catalog.json has no URL parameter table (request.url_params): a stale cache?");
  Object.assign(PARAMS, catalog.request.url_params);
}
// A search's own fields (plan.global_batch: ?gb=) are not part of an estimate's request: the search adds them.
const SEARCH_PARTS = ["plan.", "fit.", "sweep."];
const DIM_KEYS = ["n_layers", "hidden_size", "ffn_size", "n_heads", "n_kv_heads", "vocab_size"];
export const PAGE_DEFAULTS = { source: "catalog", cfg: null, dims: null, hub: null, unit: "gib", sweep: null, sweep_to: null };
// The sweep's axis and last value (issue 25: kept in the link), checked by the core's sweep fields.
const SWEEP_PARAMS = { sweep: "sweep.field", sweep_to: "sweep.stop" };
const UNITS = ["gib", "gb"];

// The defaults of every parameter, from the schema.
export function defaults(catalog) {
  const out = { ...PAGE_DEFAULTS, model: catalog.request.defaults.model, gpu: catalog.request.defaults.gpu, pins: [] };
  for (const [param, path] of Object.entries(PARAMS)) {
    const f = catalog.request.fields[path];
    out[param] = f.default === undefined ? null : f.default;
  }
  return out;
}

// Does a request field apply to this workload mode (and serving engine)? The schema lists the modes
// and engines of each field; in serve mode only the serving fields apply.
export function applies(catalog, param, mode, engine = null) {
  if (param === "mode") return true;
  const f = catalog.request.fields[PARAMS[param]];
  if (!f) return true;
  if (mode === "serve") {
    if (param === "mem") return true;
    return Boolean(f.modes && f.modes.includes("serve")) && (!f.engines || !engine || f.engines.includes(engine));
  }
  return !f.modes || f.modes.includes(mode);
}

// Read one URL or form value as its schema field's type: { ok: true, value }. Only the type is read here
// (a number, a flag, a list of names); whether the value is allowed (its range, its choices, its length) is
// the core's to say, in the error that names the field. Text that is not of the type is kept as it is, for the
// core to refuse by name.
export function parseValue(f, text) {
  const s = String(text).trim();
  if (f.nullable && (s === "" || s === "off")) return { ok: true, value: null };
  const numeric = f.type === "int" || f.type === "number" || (f.type === "choice" && f.choices.every((c) => typeof c === "number"));
  if (numeric) return { ok: true, value: s !== "" && Number.isFinite(Number(s)) ? Number(s) : s };
  if (f.type === "bool") return { ok: true, value: s === "1" || s === "true" ? true : s === "0" || s === "false" ? false : s };
  if (f.type === "names" && !(f.choices || []).includes(s)) return { ok: true, value: s.split(",").map((x) => x.trim()).filter(Boolean).join(",") };
  return { ok: true, value: s };
}

function b64urlEncode(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
function b64urlDecode(text) {
  const s = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}
export async function compressConfig(text) {
  const stream = new Blob([new TextEncoder().encode(text)]).stream().pipeThrough(new CompressionStream("deflate-raw"));
  return b64urlEncode(new Uint8Array(await new Response(stream).arrayBuffer()));
}
// Read a stream as UTF-8 text, at most `limit` bytes: past it, cancel the stream and throw `tooBig`.
// Used for a link's compressed config and for a config.json fetched from the Hub.
export async function readAtMost(reader, limit, tooBig) {
  const chunks = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > limit) {
      await reader.cancel();
      throw new Error(tooBig);
    }
    chunks.push(value);
  }
  return new TextDecoder().decode(await new Blob(chunks).arrayBuffer());
}
// Inflate at most `limit` bytes: a small link must not expand into hundreds of megabytes.
export async function decompressConfig(text, limit) {
  const reader = new Blob([b64urlDecode(text)]).stream().pipeThrough(new DecompressionStream("deflate-raw")).getReader();
  return readAtMost(reader, limit, `decompresses to more than ${limit.toLocaleString("en")} bytes (a config.json is a few KB)`);
}

// Parse a query string into a state; returns { state, messages }, each message naming its parameter.
export async function parseQuery(search, catalog) {
  const q = new URLSearchParams(search);
  const state = defaults(catalog);
  const messages = [];
  const bad = (name, value, why) => {
    const d = state[name];
    messages.push({ param: name, text: `URL parameter “${name}” = “${String(value).slice(0, 60)}” ${why}; using the default (${d === null ? "none" : d === "" ? "off" : d}).` });
  };
  const models = new Set(catalog.models.map((m) => m.id));
  const gpus = new Set(catalog.gpus.map((g) => g.id));
  if (q.has("model")) { const v = q.get("model"); if (models.has(v)) state.model = v; else bad("model", v, "is not a catalog model"); }
  if (q.has("gpu")) { const v = q.get("gpu"); if (gpus.has(v)) state.gpu = v; else bad("gpu", v, "is not a catalog GPU"); }
  if (q.has("unit")) { const v = q.get("unit"); if (UNITS.includes(v)) state.unit = v; else bad("unit", v, `must be one of ${UNITS.join(", ")}`); }
  for (const [param, path] of Object.entries(SWEEP_PARAMS)) {
    if (!q.has(param)) continue;
    const r = parseValue({ ...catalog.request.fields[path], nullable: true }, q.get(param));
    if (r.ok) state[param] = r.value; else bad(param, q.get(param), r.why);
  }
  for (const [param, path] of Object.entries(PARAMS)) {
    if (!q.has(param)) continue;
    const r = parseValue(catalog.request.fields[path], q.get(param));
    if (r.ok) state[param] = r.value; else bad(param, q.get(param), r.why);
  }
  if (q.has("cfg")) {
    try {
      state.cfg = await decompressConfig(q.get("cfg"), catalog.request.limits.max_json_chars);
      state.source = "config";
    } catch (e) {
      bad("cfg", q.get("cfg"), `is not a compressed config.json (${e.message || e})`);
    }
  }
  if (q.has("hub")) {
    const v = q.get("hub");
    if (new RegExp(catalog.request.hub.id_pattern).test(v)) { state.hub = v; state.source = "config"; state.cfg = null; }
    else bad("hub", v, "is not a Hugging Face model id (owner/name)");
  }
  if (q.has("dims")) {
    const parts = q.get("dims").split(",");
    const nums = parts.slice(0, 6).map((p) => (/^\d{1,9}$/.test(p) ? Number(p) : NaN));
    if (parts.length >= 6 && parts.length <= 7 && nums.every((n) => n >= 1)) {
      state.dims = Object.fromEntries(DIM_KEYS.map((k, i) => [k, nums[i]]));
      state.dims.tied_embeddings = parts[6] === "1";
      state.source = "custom";
    } else bad("dims", q.get("dims"), "must be layers,hidden,ffn,heads,kv_heads,vocab[,tied]");
  }
  state.pins = q.getAll("pin").slice(0, 4).filter((p) => p.length < 4000);
  return { state, messages };
}

function format(value) {
  if (value === true) return "1";
  if (value === false) return "0";
  return String(value);
}

export async function toQuery(state, catalog, { withPins = true } = {}) {
  const q = new URLSearchParams();
  const d = defaults(catalog);
  if (state.source === "config" && state.hub) q.set("hub", state.hub);        // a shared link fetches it again
  else if (state.source === "config" && state.cfg) q.set("cfg", await compressConfig(state.cfg));
  else if (state.source === "custom" && state.dims) {
    q.set("dims", DIM_KEYS.map((k) => state.dims[k]).join(",") + (state.dims.tied_embeddings ? ",1" : ""));
  } else if (state.model !== d.model) q.set("model", state.model);
  for (const param of Object.keys(PARAMS)) {
    if (param === "mem" || state[param] === d[param] || state[param] === null) continue;
    q.set(param, format(state[param]));
  }
  if (state.gpu !== d.gpu) q.set("gpu", state.gpu);
  if (state.mem) q.set("mem", String(state.mem));
  if (state.unit !== d.unit) q.set("unit", state.unit);
  for (const param of Object.keys(SWEEP_PARAMS)) if (state[param] !== null && state[param] !== undefined) q.set(param, String(state[param]));
  if (withPins) for (const p of state.pins || []) q.append("pin", p);
  return q.toString();
}

// The JSON request pycore reads (schema 1): every field that applies to the mode and differs from its
// default, by its path (a field left out takes the core's default, or the value another field implies).
export function toRequest(state, catalog, solve) {
  const req = { schema: 1, solve };
  const d = defaults(catalog);
  if (state.source === "config" && state.cfg) req.hf_config = state.cfg;      // the text: the core parses it
  else if (state.source === "custom" && state.dims) req.model = { dimensions: { ...state.dims, name: "custom" } };
  else req.model = state.model;
  for (const [param, path] of Object.entries(PARAMS)) {
    if (param === "mem" || SEARCH_PARTS.some((p) => path.startsWith(p)) || !applies(catalog, param, state.mode, state.engine) || state[param] === null) continue;
    if (state[param] === d[param] && param !== "mode") continue;          // the mode is always said
    let value = state[param];
    const type = catalog.request.fields[path]?.type;
    if (type === "names" && !(catalog.request.fields[path].choices || []).includes(value)) value = String(value).split(",");
    if (type === "object") { try { value = JSON.parse(value); } catch { /* the text: the core names the field */ } }
    const keys = path.split(".");
    let node = req;
    for (const k of keys.slice(0, -1)) node = node[k] = node[k] || {};
    node[keys.at(-1)] = value;
  }
  req.gpu = state.mem ? { memory_gib: state.mem } : state.gpu;
  return req;
}

// The layout search for this configuration: the fewest GPUs that fit (or the layouts of ``gpus``).
export function toPlanRequest(state, catalog, gpus = null) {
  const req = toRequest(state, catalog, false);
  req.plan = { limit: 200 };
  for (const [param, path] of Object.entries(PARAMS)) {               // the search's own fields (?gb=), by their paths
    if (path.startsWith("plan.") && state[param] !== null && state[param] !== undefined) req.plan[path.slice("plan.".length)] = state[param];
  }
  if (gpus) req.plan.gpus = gpus;
  return req;
}

// The URL parameter a request path belongs to (the longest matching path), for errors from the core.
export function paramOf(path) {
  if (path.startsWith("hf_config")) return "cfg";
  if (path.startsWith("model.dimensions")) return "dims";
  if (path === "model") return "model";
  if (path === "gpu" || path.startsWith("gpu.")) return path === "gpu.memory_gib" ? "mem" : "gpu";
  let best = null;
  for (const [param, p] of Object.entries(PARAMS)) {
    if ((path === p || path.startsWith(p + ".") || path.startsWith(p + "[")) && (!best || p.length > PARAMS[best].length)) best = param;
  }
  return best;
}
