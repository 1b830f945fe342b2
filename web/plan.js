import { PARAMS, toPlanRequest } from "./state.js";
import { $, PLAN_TIMEOUT_MS, text, make, errorText, fmt, app } from "./dom.js";
import { ask } from "./client.js";
import { stateToForm } from "./form.js";
import { barSpec } from "./render.js";
import { drawChart, termSeries, chartTable } from "./chart.js";

// ---- how many GPUs -------------------------------------------------------------
export const PLAN_COLUMNS = [["dp", (r) => r.degrees.data], ["tp", (r) => r.degrees.tensor], ["pp", (r) => r.degrees.pipeline],
  ["cp", (r) => r.degrees.context], ["ep", (r) => r.degrees.expert], ["ZeRO", (r) => r.zero_stage],
  ["recompute", (r) => r.recompute], ["micro-batch × acc.", (r) => r.micro_batch * 1e6 + r.gradient_accumulation, (r) => `${r.micro_batch} × ${r.gradient_accumulation}`],
  ["per GPU", (r) => r.device_total_bytes, (r) => fmt(r.device_total_bytes)],
  ["headroom", (r) => r.headroom_bytes, (r) => fmt(r.headroom_bytes)],
  ["pipeline bubble", (r) => r.throughput.bubble_fraction, (r) => `${(100 * r.throughput.bubble_fraction).toFixed(1)}%`],
  ["step time (proxy)", (r) => r.throughput.relative_step_time, (r) => r.throughput.relative_step_time.toFixed(2)],
  ["fits", (r) => (r.fits ? 1 : 0), (r) => (r.fits ? "yes" : "no")]];
let planRows = [];
let planSort = null;            // null: the core's order (the recommended layout first, then by its ranking)
let planRecommended = null;
// One row per distinct layout as shown (what a user can tell apart), and which is the recommended one.
const layoutKey = (r) => JSON.stringify([r.parallelism, r.micro_batch]);
function distinct(rows) {
  const seen = new Set();
  return rows.filter((r) => { const k = PLAN_COLUMNS.map(([, key, show]) => (show ? show(r) : String(key(r)))).join("|");
    if (seen.has(k)) return false; seen.add(k); return true; });
}

export async function findGpuCount() {
  text($("#plan-status"), "Searching every layout…");
  const { response } = await ask(toPlanRequest(app.state, app.catalog), PLAN_TIMEOUT_MS);
  if (response.status !== "ok") { text($("#plan-status"), errorText(response, "The search did not finish.")); return; }
  const plan = response.result.plan;
  text($("#plan-status"), "");
  const rec = plan.recommended;
  if (!rec) {
    $("#plan-answer").replaceChildren(make("p", { class: "verdict does-not-fit", text: plan.message || "No layout fits." }));
    planRows = [];
    planRecommended = null;
  } else {
    const d = rec.degrees;
    $("#plan-answer").replaceChildren(make("p", { "data-testid": "gpu-count", class: "verdict fits",
      text: `${plan.gpus} GPU${plan.gpus > 1 ? "s" : ""}` }),
      make("p", { text: `Recommended: data ${d.data} × tensor ${d.tensor} × pipeline ${d.pipeline} × context ${d.context} × expert ${d.expert}, ZeRO ${rec.zero_stage}, recomputation ${rec.recompute}: ${fmt(rec.device_total_bytes)} per GPU (${plan.count} valid layouts of ${plan.gpus} GPUs).` }),
      useButton(rec, "Use the recommended layout", "use-recommended"),
      ...(rec.launch ? [make("pre", { class: "launch", "data-testid": "plan-launch", text: rec.launch.text })] : []));
    planRows = distinct(plan.layouts);
    planRecommended = layoutKey(rec);
    planSort = null;
  }
  renderPlanTable();
  await drawPlanChart();
}

// The layouts side by side as the page's chart (one stacked bar per layout, in the core's order, against
// the card), and its table from the same series.
const PLAN_CHART_LAYOUTS = 12;
const layoutLabel = (r) => { const d = r.degrees;
  return `dp${d.data} tp${d.tensor} pp${d.pipeline} cp${d.context} ep${d.expert} ZeRO ${r.zero_stage} ${r.recompute} mb${r.micro_batch}`; };
async function drawPlanChart() {
  const box = $("#plan-chart");
  const rows = planRows.slice(0, PLAN_CHART_LAYOUTS).filter((r) => r.terms);
  // a region that scrolls on a phone is a tab stop (axe: scrollable-region-focusable), an empty one is not
  box.tabIndex = rows.length ? 0 : -1;
  if (!rows.length) { box.replaceChildren(); return; }
  const stacks = rows.map((r) => r.terms.filter((t) => t.bytes > 0));
  const spec = barSpec(`The first ${rows.length} layouts' memory per GPU`, stacks, rows.map(layoutLabel),
    rows.map((r) => r.device_total_bytes + r.headroom_bytes), termSeries(stacks));
  spec.x.title = "layout";
  const chart = make("div", { "data-testid": "plan-chart-plot" });
  box.replaceChildren(chart, chartTable(spec, "plan-chart-table"));
  await drawChart(chart, spec);
}

export function renderPlanTable() {
  if (!planRows.length) { $("#plan-table").replaceChildren(); return; }
  const sorted = planSort ? PLAN_COLUMNS[planSort.column][1] : null;
  const rows = sorted ? [...planRows].sort((a, b) => (planSort.descending ? sorted(b) - sorted(a) : sorted(a) - sorted(b)) || 0) : planRows;
  const head = make("tr", {}, ...PLAN_COLUMNS.map(([label], i) => {
    const on = planSort && i === planSort.column;
    const b = make("button", { type: "button", text: label + (on ? (planSort.descending ? " ▼" : " ▲") : "") });
    b.addEventListener("click", () => { planSort = { column: i, descending: on ? !planSort.descending : true }; renderPlanTable(); });
    return make("th", { scope: "col", "aria-sort": on ? (planSort.descending ? "descending" : "ascending") : "none" }, b);
  }), make("th", { scope: "col", text: "" }));
  const body = rows.map((r) => {
    const best = layoutKey(r) === planRecommended;
    const use = useButton(r, best ? "Use (recommended)" : "Use");
    return make("tr", best ? { class: "recommended", "data-testid": "plan-recommended" } : {},
      ...PLAN_COLUMNS.map(([, k, show]) => make("td", { class: "num", text: show ? show(r) : String(k(r)) })), make("td", {}, use));
  });
  $("#plan-table").replaceChildren(make("table", { class: "layouts" }, make("thead", {}, head), make("tbody", {}, ...body)));
}

function useButton(r, label, testid = null) {
  const b = make("button", { type: "button", text: label, ...(testid ? { "data-testid": testid } : {}) });
  b.addEventListener("click", () => applyLayout(r));
  return b;
}

// The row's layout by its request paths (the core's names), each set through the URL parameter the schema
// gives that path (catalog.json request.url_params): no field is mapped by hand.
export function applyLayout(r) {
  app.focusAnswer = true;
  const values = { "workload.batch_size": r.micro_batch };
  for (const [name, value] of Object.entries(r.parallelism)) values[`parallelism.${name}`] = value;
  const paramOfPath = Object.fromEntries(Object.entries(PARAMS).map(([param, path]) => [path, param]));
  for (const [path, value] of Object.entries(values)) if (paramOfPath[path]) app.state[paramOfPath[path]] = value;
  stateToForm();
  app.update();
}
