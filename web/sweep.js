import { toQuery, toRequest } from "./state.js";
import { $, text, errorText, app } from "./dom.js";
import { ask } from "./client.js";
import { drawChart, chartTable, termSeries } from "./chart.js";

// ---- sweeps: one request to the core, every point; drawn as stacked areas by term -------------
// The series are keyed by term across all points (issue 25, point 1): a term that appears only at long
// sequences (activations, logits) gets its own column, colour and legend entry, and a point without it
// reads 0 there. The chart (web/chart.js), its legend and the table are drawn from the same series.
const FIELD_WORDS = { batch_size: "batch size", seq_len: "sequence length (tokens)", gpus: "GPUs (data parallel)" };

export async function runSweep() {
  const field = $("#sweep-field").value;
  const to = $("#sweep-stop").value.trim();
  if (to && !/^\d{1,9}$/.test(to)) { text($("#sweep-status"), `“${to.slice(0, 12)}” is not a whole number.`); return; }
  text($("#sweep-status"), "Computing…");
  // the axis and the last value go into the link, so that a shared link draws the same sweep
  app.state.sweep = field;
  app.state.sweep_to = to ? Number(to) : null;
  history.replaceState(null, "", `?${await toQuery(app.state, app.catalog)}`);
  const req = toRequest(app.state, app.catalog, false);
  req.sweep = { field, ...(to ? { stop: Number(to) } : {}) };
  const { response } = await ask(req);
  if (response.status !== "ok") {
    text($("#sweep-status"), errorText(response, "The sweep did not finish."));
    return;
  }
  text($("#sweep-status"), "");
  await drawSweep(response.result.sweep);
}

// The sweep as the chart's spec: its points' values on x, every term across the points, the card's
// capacity at each point, and the out-of-memory point (or, for GPUs, the first count that fits).
export function sweepSpec(sw) {
  const pts = sw.points.filter((p) => !p.error);
  const what = FIELD_WORDS[sw.field] || sw.field;
  const mark = sw.oom_at ?? sw.fits_from;
  const index = pts.findIndex((p) => p.value === mark);
  return { label: `Device memory against ${what}`, x: { title: what, values: pts.map((p) => p.value) },
    terms: termSeries(pts.map((p) => p.terms)), capacity: pts.map(() => sw.capacity_bytes),
    oom: index < 0 ? [] : [{ index, text: sw.oom_at ? `out of memory from ${mark}` : `fits from ${mark}` }] };
}

export async function drawSweep(sw) {
  const spec = sweepSpec(sw);
  if (!spec.x.values.length) { $("#sweep-chart").replaceChildren(); $("#sweep-table").replaceChildren(); return; }
  await drawChart($("#sweep-chart"), spec);
  $("#sweep-table").replaceChildren(chartTable(spec, "sweep-rows"));
}
