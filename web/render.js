import { PARAMS, applies } from "./state.js";
import { $, form, SHADES, UNITS, text, make, showVerdict, atRiskNote, fmt, app } from "./dom.js";
import { stateToForm } from "./form.js";
import { setTopFix } from "./summary.js";
import { drawChart, colourOf, docsHref } from "./chart.js";

// ---- rendering -----------------------------------------------------------------
// A serving answer: the GPU's parts as the engine budgets them, the KV tokens and requests, and the
// lines the engine itself would print.
export function renderServe(res) {
  const [div, unit] = UNITS[app.state.unit];
  text($("#serve-longest"), "");
  renderPerDevice(null);
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
  text($("#requests-word"), res.max_concurrency === 1 ? "request" : "requests");
  text($("#ctx-len"), res.context_len.toLocaleString("en"));
  text($("#longest"), `${res.max_context_len.toLocaleString("en")} tokens`);
  const refusal = $("#refusal");
  refusal.hidden = !res.refusal;
  text(refusal, res.refusal ? `The engine refuses: ${res.refusal}` : "");
  text($("#engine-log"), Object.entries(res.report).filter(([k, val]) => /^[A-Z]/.test(k) || k === "file size")
    .map(([k, val]) => `${k}: ${typeof val === "object" ? JSON.stringify(val) : val}`).join("\n"));
  termTable(drawAnswerBar(res), res, false);
}

export function renderServeSolved(res) {
  const sol = res.solutions;
  $("#suggestions").replaceChildren();
  if (!sol) return;
  const req = (n) => `${n.toLocaleString("en")} request${n === 1 ? "" : "s"}`;
  // the headline says the longest context that fits, the solver's answer, beside the configured one
  text($("#serve-longest"), `Longest context that fits for ${req(sol.target_requests)} at once: ${sol.longest_context_for_requests.toLocaleString("en")} tokens.`);
  const lines = [make("p", { "data-testid": "serve-solutions", text: `Longest context for ${req(sol.target_requests)} at once: `
    + `${sol.longest_context_for_requests.toLocaleString("en")} tokens. Most requests of ${sol.context_len.toLocaleString("en")} tokens: `
    + `${sol.most_requests_at_context.toLocaleString("en")}.` })];
  if (sol.smallest_gpu) lines.push(make("p", { text: `Smallest app.catalog GPU for that: ${sol.smallest_gpu.name}.` }));
  if (sol.fewest_gpus) lines.push(make("p", { text: `Fewest GPUs of this kind: ${sol.fewest_gpus.gpus}.` }));
  if (sol.gguf) {
    const head = make("tr", {}, ...["preset", "file", "bits/weight", "-ngl that fit", ""].map((h) => make("th", { scope: "col", text: h })));
    const body = sol.gguf.map((c) => {
      const use = make("button", { type: "button", text: "Use" });
      use.addEventListener("click", () => { app.focusAnswer = true; app.state.quant = c.quant; app.state.n_gpu_layers = c.all_layers ? null : c.n_gpu_layers; stateToForm(); app.update(); });
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

export function renderMain(res) {
  const [div, unit] = UNITS[app.state.unit];
  text($("#serve-longest"), "");
  text($("#unit-label"), unit);
  text($("#status"), res.warnings.length ? `Note: ${res.warnings.join(" ")}` : "");
  text($("#peak"), (res.device_total_bytes / div).toFixed(2));
  showVerdict(res);
  const head = Math.abs(res.headroom_bytes);
  text($("#verdict-text"), res.headroom_bytes >= 0 ? `on ${res.gpu.name}, with ${fmt(head)} to spare${atRiskNote(res)}`
    : `on ${res.gpu.name}: ${fmt(head)} too much (the card has ${fmt(res.gpu.memory_bytes)})`);
  text($("#phase"), `Peak during ${res.peak_phase}: ${res.peak_moment}. torch.cuda.max_memory_allocated ≈ ${fmt(res.peak_allocated_bytes)}.`);
  renderLayoutLine(res);
  renderPerDevice(res.per_device);
  termTable(drawAnswerBar(res), res, true);
}

// The breakdown's table, from the chart's terms: a row per term (with its explanation, where the core
// gives one) and up to eight of its parts, then the device total; two cells a row, as the header.
function termTable(top, res, explained) {
  const rows = [];
  for (const c of top) {
    const swatch = make("span", { class: "swatch", style: `background:${colourOf(c.key, c.name)}` });
    const name = make("td", {}, ...(explained ? [] : [swatch, c.name]));
    if (explained) {
      name.append(make("details", { "data-term": c.name, "data-key": c.key || "" },
        make("summary", {}, swatch, c.name), make("div", { class: "explain", text: "…" })));
    }
    rows.push(make("tr", {}, name, make("td", { class: "num", text: fmt(c.bytes) })));
    for (const leaf of (c.children || []).slice(0, 8)) {
      rows.push(make("tr", { class: "sub" }, make("td", { text: leaf.name }), make("td", { class: "num", text: fmt(leaf.bytes) })));
    }
  }
  rows.push(make("tr", {}, make("th", { text: "device total (nvidia-smi)" }), make("th", { class: "num", text: fmt(res.device_total_bytes) })));
  $("#table tbody").replaceChildren(...rows);
}

// The device total's terms, the allocated ones first: the core's tree with "allocated at peak" opened.
export function topTerms(tree) {
  return tree.children.flatMap((c) => (c.name === "allocated at peak" ? c.children : [c]));
}

// A stack of terms as the chart draws it: one bar per stack, labelled, against each one's card.
export function barSpec(label, stacks, labels, capacities, terms) {
  const oom = stacks.map((t, i) => ({ index: i, text: `${labels[i]} out of memory` }))
    .filter((m, i) => stacks[i].reduce((a, t) => a + t.bytes, 0) > capacities[i]);
  return { label, bars: true, x: { title: "configuration", values: labels.map((_, i) => i), labels }, terms, capacity: capacities, oom };
}

// The answer's breakdown as the page's chart (one stacked bar against the card), its legend's terms
// buttons that expand a term; the chosen term expanded again with the new numbers. Returns the terms.
export function drawAnswerBar(res) {
  const top = topTerms(res.breakdown).filter((c) => c.bytes > 0);
  const terms = top.map((c) => ({ key: c.key || "", name: c.name, values: [c.bytes] }));
  const spec = { ...barSpec(`Where the memory goes on ${res.gpu.name}`, [top], ["this run"], [res.gpu.memory_bytes], terms),
    pick: (k) => expandTerm(top[k]), picked: expanded };
  drawChart($("#bar"), spec).then(() => refreshExpanded(top), (err) => text($("#bar"), err.message));
  return top;
}

// A term's parts as a thin bar on the scale of the term (the parts are not terms: shades by position).
function drawParts(bar, parts, scale) {
  bar.replaceChildren(...parts.map((c, i) => make("div", { class: "seg", title: `${c.name}: ${fmt(c.bytes)}`, "aria-label": `${c.name}: ${fmt(c.bytes)}`,
    style: `width:${(100 * c.bytes / scale).toFixed(3)}%;background:${partColour(i)}` })));
}
const partColour = (i) => SHADES[i % SHADES.length];

// A term chosen in the bar: its parts as a second bar with a legend, and its row of the table opened
// (what it is, the core's formula with this run's numbers, the Method link).
let expanded = "";           // the term chosen in the bar, kept across answers
export function expandTerm(term, chosen = true) {
  expanded = term.name;
  const box = $("#bar-detail");
  // a term whose only part is itself (the KV cache, gradients) has no parts to show
  const parts = (term.children || []).filter((c) => c.bytes > 0 && !(term.children.length === 1 && c.name === term.name));
  const legend = parts.map((c, i) => make("li", {}, make("span", { class: "swatch", style: `background:${partColour(i)}` }),
    `${c.name}: ${fmt(c.bytes)}`));
  const sub = make("div", { class: "bar sub-bar", role: "group", "aria-label": `Parts of ${term.name}` });
  if (parts.length) drawParts(sub, parts, term.bytes);
  box.replaceChildren(make("p", { text: `${term.name}: ${fmt(term.bytes)}${parts.length ? `, in ${parts.length} part(s)` : ""}` }),
    ...(parts.length ? [sub, make("ul", { class: "legend" }, ...legend)] : []));
  box.hidden = false;
  for (const b of $("#bar").querySelectorAll("button[data-term]")) b.setAttribute("aria-pressed", String(b.dataset.term === term.name));
  const det = [...document.querySelectorAll("#table details")].find((d) => d.dataset.term === term.name);
  if (det && chosen) { det.open = true; det.scrollIntoView({ block: "nearest" }); }
}

// After a new answer: the chosen term again, with its new numbers, or nothing if it is gone.
export function refreshExpanded(top) {
  const term = top.find((c) => c.name === expanded);
  if (term) { expandTerm(term, false); return; }
  expanded = "";
  $("#bar-detail").hidden = true;
}

// Which rank the answer is for, and what the recipe leaves out or puts on the host.
export function renderLayoutLine(res) {
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

export function renderSolved(res) {
  const gaps = (res.max_seq_len_gaps || []).map(([a, b]) => `${a.toLocaleString()}–${b.toLocaleString()}`);
  const largest = res.max_batch_size ? `Largest batch that fits: ${res.max_batch_size}.` : "No batch size fits, not even 1.";
  const longest = res.max_seq_len ? `Longest sequence that fits: ${res.max_seq_len.toLocaleString()} tokens.` : "No sequence length fits at this batch size.";
  text($("#solver"), `${largest} ${longest}`
    + (gaps.length ? ` Sequences of ${gaps.join(" and ")} tokens do not fit, although longer ones do: the attention kernel changes past the sliding window.` : ""));
  for (const det of document.querySelectorAll("#table details")) {
    const ex = res.explanations[det.dataset.term];
    const box = det.querySelector(".explain");
    if (!ex) { text(box, ""); continue; }
    const href = docsHref(det.dataset.key) || "docs/method/";      // the core's anchor for the term's key
    box.replaceChildren(make("p", { text: ex.what }), make("p", {}, "Formula: ", make("code", { text: ex.formula })),
      make("p", {}, "Here: ", make("code", { text: ex.numbers })),
      make("a", { href, text: "Method and sources" }));
  }
  const plans = res.fit ? res.fit.plans : [];
  if (plans.length) {
    // The cheapest combinations that fit, from the core's search; each applies as one change of the form.
    $("#suggestions").replaceChildren(...plans.map((p, i) => {
      const b = make("button", { type: "button", text: `Apply plan ${i + 1}` });
      b.addEventListener("click", () => applyChange(nest(p.set)));
      if (i === 0) setTopFix(p.changes.map((c) => c.change).join(", "));
      return make("li", { class: "plan", "data-testid": "fit-plan" }, b, ` → ${fmt(p.device_total_bytes)} (${p.verdict}, ${fmt(p.headroom_bytes)} to spare)`
        + (p.host_bytes ? `; ${fmt(p.host_bytes)} of host memory` : ""),
        make("ul", {}, ...p.changes.map((c) => make("li", { text: `${c.change}: ${c.cost}` }))));
    }));
    return;
  }
  if (res.fit && res.fit.message) text($("#solver"), `${$("#solver").textContent} ${res.fit.message}.`);
  const firstFix = res.suggestions.find((s) => s.fits);
  setTopFix(res.fits ? "" : (firstFix || res.suggestions[0] || {}).change || "");
  $("#suggestions").replaceChildren(...res.suggestions.map((s) => {
    const b = make("button", { type: "button", text: s.change });
    b.addEventListener("click", () => applyChange(s.set));
    return make("li", {}, b, ` → ${fmt(s.device_total_bytes)}${s.fits ? " (fits)" : ""}; ${s.cost}`);
  }));
}

// "workload.batch_size" -> {workload: {batch_size}}: the fit plans' flat paths in applyChange's shape.
export function nest(flat) {
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
export function applyChange(set) {
  for (const [param, path] of Object.entries(PARAMS)) {
    const [group, ...rest] = path.split(".");
    let node = set[group];
    for (const k of rest) node = node === undefined ? undefined : node[k];
    // an object (a PEFT adapter config) lives in the state as its JSON text, as the form shows it
    if (node !== undefined) app.state[param] = node && typeof node === "object" && !Array.isArray(node) ? JSON.stringify(node) : node;
  }
  app.focusAnswer = true;                    // the new verdict takes the focus once it is drawn
  if (set.precision && "autocast" in set.precision && !set.precision.autocast && set.precision.weights) app.state.w = set.precision.weights;
  stateToForm();
  app.update();
}

// transformers' device_map (the hf engine over several GPUs or with max_memory): one row per device, as
// the core places the layers, with each device's peak.
export function renderPerDevice(devices) {
  const box = $("#per-device");
  if (!Array.isArray(devices) || !devices.length) { box.replaceChildren(); return; }
  const layers = (d) => (d.layers || []).map(([a, b]) => (a === b ? `${a}` : `${a}–${b}`)).join(", ") || "none";
  const head = make("tr", {}, ...["device", "layers", "weights", "KV cache", "peak (nvidia-smi)", "budget"]
    .map((h) => make("th", { scope: "col", text: h })));
  const rows = devices.map((d) => make("tr", {}, make("td", { text: `GPU ${d.device}` }), make("td", { text: layers(d) }),
    make("td", { class: "num", text: fmt(d.weights_bytes || 0) }), make("td", { class: "num", text: fmt(d.kv_cache_bytes || 0) }),
    make("td", { class: "num", text: fmt(d.peak_bytes || 0) }), make("td", { class: "num", text: d.budget_bytes ? fmt(d.budget_bytes) : "–" })));
  box.replaceChildren(make("table", { "data-testid": "per-device" }, make("caption", { text: "Per GPU (device_map)" }),
    make("thead", {}, head), make("tbody", {}, ...rows)));
}
