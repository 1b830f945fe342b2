import { toQuery, toRequest } from "./state.js";
import { $, text, make, errorText, fmt, UNITS, app } from "./dom.js";
import { ask } from "./client.js";
import { termColour } from "./render.js";

// ---- sweeps: one request to the core, every point; drawn as stacked areas by term -------------
// The series are keyed by term across all points (issue 25, point 1): a term that appears only at long
// sequences (activations, logits) gets its own column, colour and legend entry, and a point without it
// reads 0 there. The chart, its legend and the table are drawn from the same series.
export const SVG = "http://www.w3.org/2000/svg";
export function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}
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
  drawSweep(response.result.sweep);
}

// Every term of every point, in the order they stack: a name first seen later goes after the term
// before it in that point.
export function seriesNames(points) {
  const names = [];
  for (const p of points) {
    let after = -1;
    for (const t of p.terms) {
      const at = names.indexOf(t.name);
      if (at >= 0) { after = at; continue; }
      names.splice(after + 1, 0, t.name);
      after += 1;
    }
  }
  return names;
}

export function drawSweep(sw) {
  const pts = sw.points.filter((p) => !p.error);
  if (!pts.length) { $("#sweep-chart").replaceChildren(); $("#sweep-legend").replaceChildren(); return; }
  const names = seriesNames(pts);
  const series = names.map((name) => pts.map((p) => (p.terms.find((t) => t.name === name) || { bytes: 0 }).bytes));
  const W = 640, H = 280, L = 64, B = 46, T = 26, R = 16;
  const top = Math.max(sw.capacity_bytes, ...pts.map((p) => p.device_total_bytes)) * 1.05;
  const x = (i) => L + (pts.length === 1 ? 0 : (i * (W - L - R)) / (pts.length - 1));
  const y = (b) => H - B - (b / top) * (H - B - T);
  const what = FIELD_WORDS[sw.field] || sw.field;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `Device memory against ${what}; the table below holds the same numbers`, class: "sweep" });
  const base = pts.map(() => 0);
  series.forEach((values, k) => {
    const lower = base.slice();
    values.forEach((b, i) => { base[i] += b; });
    const d = pts.map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(base[i]).toFixed(1)}`).join("")
      + pts.map((p, i) => `L${x(pts.length - 1 - i).toFixed(1)},${y(lower[pts.length - 1 - i]).toFixed(1)}`).join("") + "Z";
    const area = svg("path", { d, fill: termColour(names[k]), "fill-opacity": "0.85", "data-term": names[k] });
    area.append(Object.assign(svg("title"), { textContent: names[k] }));
    chart.append(area);
  });
  const label = (attrs, words) => Object.assign(svg("text", { class: "axis", ...attrs }), { textContent: words });
  // the y axis: 0, half and the top, in the page's unit; its title above it
  const [div, unit] = UNITS[app.state.unit];
  for (const f of [0, 0.5, 1]) {
    const b = (top / 1.05) * f;
    chart.append(svg("line", { x1: L - 4, x2: L, y1: y(b), y2: y(b), class: "tick" }),
      label({ x: L - 6, y: y(b) + 4, "text-anchor": "end" }, (b / div).toFixed(b / div >= 100 ? 0 : 1)));
  }
  chart.append(label({ x: 4, y: 12 }, `memory (${unit})`));
  const cap = y(sw.capacity_bytes);
  chart.append(svg("line", { x1: L, x2: W - R, y1: cap, y2: cap, class: "capacity", "data-testid": "capacity-line" }),
    label({ x: W - R, y: cap - 4, "text-anchor": "end" }, `GPU: ${fmt(sw.capacity_bytes)}`));
  const mark = sw.oom_at ?? sw.fits_from;
  const mi = pts.findIndex((p) => p.value === mark);
  if (mi >= 0) {
    const right = x(mi) > W / 2;                      // the words go to the side with room
    chart.append(svg("line", { x1: x(mi), x2: x(mi), y1: T, y2: H - B, class: "oom", "data-testid": "oom-mark" }),
      label({ x: x(mi) + (right ? -4 : 4), y: T - 8, "text-anchor": right ? "end" : "start" },
        sw.oom_at ? `out of memory from ${mark}` : `fits from ${mark}`));
  }
  // the x axis: as many labels as fit without overlapping (about 44 px each), the last always
  const every = Math.max(1, Math.ceil((pts.length * 44) / (W - L - R)));
  pts.forEach((p, i) => {
    if (i % every === 0 || i === pts.length - 1) {
      if (i !== pts.length - 1 && pts.length - 1 - i < every) return;
      chart.append(label({ x: x(i), y: H - B + 16, "text-anchor": i === pts.length - 1 ? "end" : "middle", "data-tick": String(p.value) }, String(p.value)));
    }
    const hit = svg("rect", { x: x(i) - 8, y: T, width: 16, height: H - B - T, class: "hit", tabindex: "0", role: "img", "data-value": String(p.value),
      "aria-label": `${what} ${p.value}: ${fmt(p.device_total_bytes)}` });
    const show = () => text($("#sweep-point"), `${sw.field} ${p.value}: ${fmt(p.device_total_bytes)}${p.fits ? "" : " (does not fit)"} = `
      + names.map((n, k) => [n, series[k][i]]).filter(([, b]) => b).map(([n, b]) => `${n} ${fmt(b)}`).join(" + "));
    hit.addEventListener("mouseenter", show);
    hit.addEventListener("focus", show);
    chart.append(hit);
  });
  chart.append(label({ x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" }, what));
  $("#sweep-chart").replaceChildren(chart);
  $("#sweep-legend").replaceChildren(...names.map((n) => make("li", { "data-term": n },
    make("span", { class: "swatch", style: `background:${termColour(n)}` }), n)));
  const head = make("tr", {}, make("th", { scope: "col", text: sw.field }), make("th", { scope: "col", text: "device total" }),
    ...names.map((n) => make("th", { scope: "col", text: n })));
  $("#sweep-table").replaceChildren(make("table", { id: "sweep-rows" }, make("thead", {}, head), make("tbody", {},
    ...pts.map((p, i) => make("tr", {}, make("td", { text: String(p.value) }), make("td", { class: "num", text: fmt(p.device_total_bytes) }),
      ...series.map((values) => make("td", { class: "num", text: fmt(values[i]) })))))));
}
