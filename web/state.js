// The page's configuration and its URL form. Defaults are omitted from the URL so that links stay
// short; a bad value gets a message naming the parameter and falls back to its default.

export const DEFAULTS = {
  source: "catalog", model: "llama-3.1-8b", cfg: null, dims: null, mode: "full", batch: 1, seq: 2048, new: 0,
  weights: "bf16", amp: "", opt: "adamw", attn: "sdpa", ckpt: false, rank: 16, targets: "", kv: "",
  gpu: "h100-sxm-80gb", mem: null, unit: "gib", dp: 1, zero: "0",
};

const CHOICES = {
  mode: ["full", "lora", "qlora", "inference"], weights: ["fp32", "bf16", "fp16", "fp8", "int8", "int4"],
  amp: ["", "bf16", "fp16"], opt: ["adamw", "adamw_fused", "adamw_8bit", "adafactor", "lion", "sgd", "sgd_momentum"],
  attn: ["sdpa", "eager"], kv: ["", "fp8", "int8", "fp32", "bf16", "fp16"], unit: ["gib", "gb"],
  zero: ["0", "1", "2", "3"],
};
const INTS = { batch: [1, 1e8], seq: [1, 1e8], new: [0, 1e8], rank: [1, 65536], dp: [1, 65536] };
const PARAM = { weights: "w" };           // state key -> URL parameter when they differ
const DIM_KEYS = ["n_layers", "hidden_size", "ffn_size", "n_heads", "n_kv_heads", "vocab_size"];

const param = (k) => PARAM[k] || k;

function b64urlEncode(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
function b64urlDecode(text) {
  const s = atob(text.replace(/-/g, "+").replace(/_/g, "/"));
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}
async function pipe(bytes, stream) {
  const out = new Response(new Blob([bytes]).stream().pipeThrough(stream));
  return new Uint8Array(await out.arrayBuffer());
}
export async function compressConfig(obj) {
  return b64urlEncode(await pipe(new TextEncoder().encode(JSON.stringify(obj)), new CompressionStream("deflate-raw")));
}
export async function decompressConfig(text) {
  const bytes = await pipe(b64urlDecode(text), new DecompressionStream("deflate-raw"));
  return JSON.parse(new TextDecoder().decode(bytes));
}

// Parse a query string into a state; returns { state, messages }.
export async function parseQuery(search, catalog) {
  const q = new URLSearchParams(search);
  const state = { ...DEFAULTS };
  const messages = [];
  const bad = (name, value, why, key) => {
    const shown = String(value).slice(0, 60);
    messages.push(`URL parameter “${name}” = “${shown}” ${why}; using the default (${DEFAULTS[key] === null ? "none" : DEFAULTS[key] === "" ? "off" : DEFAULTS[key]}).`);
  };
  const models = new Set(catalog.models.map((m) => m.id));
  const gpus = new Set(catalog.gpus.map((g) => g.id));
  if (q.has("model")) {
    const v = q.get("model");
    if (models.has(v)) state.model = v; else bad("model", v, "is not a catalog model", "model");
  }
  if (q.has("gpu")) {
    const v = q.get("gpu");
    if (gpus.has(v)) state.gpu = v; else bad("gpu", v, "is not a catalog GPU", "gpu");
  }
  for (const [key, allowed] of Object.entries(CHOICES)) {
    const name = param(key);
    if (!q.has(name)) continue;
    const v = q.get(name);
    if (allowed.includes(v)) state[key] = v; else bad(name, v, `must be one of ${allowed.filter(Boolean).join(", ")}`, key);
  }
  for (const [key, [lo, hi]] of Object.entries(INTS)) {
    if (!q.has(key)) continue;
    const v = q.get(key);
    const n = /^\d{1,9}$/.test(v) ? Number(v) : NaN;
    if (Number.isInteger(n) && n >= lo && n <= hi) state[key] = n;
    else bad(key, v, `must be a whole number from ${lo} to ${hi}`, key);
  }
  if (q.has("ckpt")) {
    const v = q.get("ckpt");
    if (v === "1" || v === "0") state.ckpt = v === "1"; else bad("ckpt", v, "must be 1 or 0", "ckpt");
  }
  if (q.has("targets")) {
    const v = q.get("targets");
    if (/^(all-linear|[A-Za-z0-9_.]{1,64}(,[A-Za-z0-9_.]{1,64}){0,31})$/.test(v)) state.targets = v;
    else bad("targets", v, "must be module names separated by commas, or all-linear", "targets");
  }
  if (q.has("mem")) {
    const v = q.get("mem");
    const n = /^\d{1,7}(\.\d{1,3})?$/.test(v) ? Number(v) : NaN;
    if (n > 0) state.mem = n; else bad("mem", v, "must be a positive number of GiB", "mem");
  }
  if (q.has("cfg")) {
    try {
      const cfg = await decompressConfig(q.get("cfg"));
      if (cfg === null || typeof cfg !== "object" || Array.isArray(cfg)) throw new Error("not an object");
      state.cfg = cfg;
      state.source = "config";
    } catch {
      bad("cfg", q.get("cfg"), "is not a compressed config.json", "cfg");
    }
  }
  if (q.has("dims")) {
    const parts = q.get("dims").split(",");
    const nums = parts.slice(0, 6).map((p) => (/^\d{1,9}$/.test(p) ? Number(p) : NaN));
    if (parts.length >= 6 && parts.length <= 7 && nums.every((n) => n >= 1)) {
      state.dims = Object.fromEntries(DIM_KEYS.map((k, i) => [k, nums[i]]));
      state.dims.tied_embeddings = parts[6] === "1";
      state.source = "custom";
    } else bad("dims", q.get("dims"), "must be layers,hidden,ffn,heads,kv_heads,vocab[,tied]", "dims");
  }
  state.pins = q.getAll("pin").slice(0, 4).filter((p) => p.length < 4000);
  return { state, messages };
}

export async function toQuery(state, { withPins = true } = {}) {
  const q = new URLSearchParams();
  if (state.source === "config" && state.cfg) q.set("cfg", await compressConfig(state.cfg));
  else if (state.source === "custom" && state.dims) {
    q.set("dims", DIM_KEYS.map((k) => state.dims[k]).join(",") + (state.dims.tied_embeddings ? ",1" : ""));
  } else if (state.model !== DEFAULTS.model) q.set("model", state.model);
  for (const key of ["mode", "batch", "seq", "new", "weights", "amp", "opt", "attn", "rank", "targets", "kv", "dp", "zero", "gpu", "unit"]) {
    if (state[key] !== DEFAULTS[key]) q.set(param(key), String(state[key]));
  }
  if (state.ckpt) q.set("ckpt", "1");
  if (state.mem) q.set("mem", String(state.mem));
  if (withPins) for (const p of state.pins || []) q.append("pin", p);
  return q.toString();
}

// The JSON request pycore reads (schema 1).
export function toRequest(state, solve) {
  const req = { schema: 1, solve };
  if (state.source === "config" && state.cfg) req.hf_config = state.cfg;
  else if (state.source === "custom" && state.dims) req.model = { dimensions: { ...state.dims, name: "custom" } };
  else req.model = state.model;
  const w = { mode: state.mode, batch_size: state.batch, seq_len: state.seq, attention: state.attn };
  if (state.mode === "inference") w.new_tokens = state.new;
  else {
    w.optimizer = state.opt;
    w.gradient_checkpointing = state.ckpt;
  }
  if (state.mode === "lora" || state.mode === "qlora") {
    w.lora = { rank: state.rank };
    if (state.targets) w.lora.targets = state.targets === "all-linear" ? "all-linear" : state.targets.split(",");
  }
  req.workload = w;
  const amp = state.mode === "full" || state.mode === "lora" ? state.amp : "";
  req.precision = { weights: amp ? "fp32" : state.weights, autocast: amp || null, kv_cache: state.mode === "inference" && state.kv ? state.kv : null };
  if (state.mode !== "inference" && (state.dp > 1 || state.zero !== "0")) {
    req.parallelism = { data_parallel: state.dp, zero_stage: Number(state.zero) };
  }
  req.gpu = state.mem ? { memory_gib: state.mem } : state.gpu;
  return req;
}
