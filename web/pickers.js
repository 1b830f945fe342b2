// The searchable pickers (issue 25, point 3) and the GPU count on the main form. Typing filters a list
// to pick from; nothing is selected until the user picks (typing "70b" does not change the model), and
// a search with no match says so and leaves the model as it is.
import { $, make, text, app } from "./dom.js";

// A query's words, each without '-', '.' or '_': "llama 3.1 70" -> ["llama", "31", "70"].
function words(query) {
  return query.toLowerCase().split(/\s+/).map((w) => w.replace(/[-._]/g, "")).filter(Boolean);
}
// Does every word of the query occur in the entry's text (in any order, ignoring '-', '.', '_' and spaces)?
export function matches(query, haystack) {
  const flat = haystack.toLowerCase().replace(/[-._\s]/g, "");
  return words(query).every((w) => flat.includes(w));
}
const MAX_SHOWN = 30;

function showPicks(list, note, query, entries, pick) {
  if (!query.trim()) { list.replaceChildren(); text(note, ""); return; }
  const found = entries.filter((e) => matches(query, e.search));
  text(note, found.length ? `${found.length} match${found.length === 1 ? "" : "es"}${found.length > MAX_SHOWN ? `, the first ${MAX_SHOWN} shown` : ""}; choose one.`
    : `No match for “${query.slice(0, 40)}”; the selection is unchanged.`);
  list.replaceChildren(...found.slice(0, MAX_SHOWN).map((e) => {
    const b = make("button", { type: "button", text: e.label, "data-value": e.value });
    b.addEventListener("click", () => pick(e.value));
    return make("li", {}, b);
  }));
}

const modelEntries = () => app.catalog.models.map((m) => ({ value: m.id, search: `${m.id} ${m.family}`,
  label: `${m.id} (${(m.params / 1e9).toFixed(m.params < 1e9 ? 2 : 1)} B)` }));
const gpuEntries = () => app.catalog.gpus.map((g) => ({ value: g.id, search: `${g.id} ${g.name} ${(g.memory_bytes / 2 ** 30).toFixed(0)}gib`,
  label: `${g.name} (${(g.memory_bytes / 2 ** 30).toFixed(1)} GiB)` }));

// Wire the two searches: `chosen(param, value)` applies a pick (the form's own change path).
export function wirePickers(chosen) {
  const modelSearch = $("#model-search");
  const gpuSearch = $("#gpu-search");
  const pickModel = (id) => { modelSearch.value = ""; showPicks($("#model-results"), $("#model-results-note"), "", [], null); chosen("model", id); };
  const pickGpu = (id) => { gpuSearch.value = ""; showPicks($("#gpu-results"), $("#gpu-results-note"), "", [], null); chosen("gpu", id); };
  modelSearch.addEventListener("input", () => showPicks($("#model-results"), $("#model-results-note"), modelSearch.value, modelEntries(), pickModel));
  gpuSearch.addEventListener("input", () => showPicks($("#gpu-results"), $("#gpu-results-note"), gpuSearch.value, gpuEntries(), pickGpu));
  for (const [input, list] of [[modelSearch, "#model-results"], [gpuSearch, "#gpu-results"]]) {
    input.addEventListener("keydown", (e) => {                  // Enter picks the only match; Down moves into the list
      const buttons = [...$(list).querySelectorAll("button")];
      if (e.key === "Enter") { e.preventDefault(); if (buttons.length === 1) buttons[0].click(); }
      if (e.key === "ArrowDown" && buttons.length) { e.preventDefault(); buttons[0].focus(); }
    });
  }
}

// ---- the GPU count ----------------------------------------------------------------
// Serving: the engine's own field (vLLM's --tensor-parallel-size, SGLang's --tp-size, llama.cpp's and
// transformers' devices). Training: data × tensor × pipeline × context parallel; a new count changes the
// data-parallel degree, so it must be a multiple of the other degrees.
const SERVE_COUNT = { vllm: "tensor_parallel_size", sglang: "tp_size", llamacpp: "devices", hf: "devices" };
export function gpuCountParam(state) {
  return state.mode === "serve" ? SERVE_COUNT[state.engine] || "devices" : "dp";
}
export function gpuCount(state) {
  if (state.mode === "serve") return state[gpuCountParam(state)] || 1;
  return (state.dp || 1) * (state.tp || 1) * (state.pp || 1) * (state.cp || 1);
}
// The state's change for a typed count: { param, value } or { why }.
export function readGpuCount(state, raw) {
  if (!/^\d{1,4}$/.test(raw.trim()) || Number(raw) < 1) return { why: "must be a whole number from 1" };
  const n = Number(raw);
  const param = gpuCountParam(state);
  if (param !== "dp") return { param, value: n };
  const others = (state.tp || 1) * (state.pp || 1) * (state.cp || 1);
  if (n % others) return { why: `must be a multiple of tensor × pipeline × context parallel (${others})` };
  return { param: "dp", value: n / others };
}
