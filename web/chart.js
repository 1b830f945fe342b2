// The page's one chart (issue 25): uPlot (self-hosted under vendor/, MIT), drawn the same way for the
// sweep (stacked areas against batch, length or GPUs), the answer's breakdown (one stacked bar) and the
// layout comparison (one stacked bar per pin). Each chart has a legend whose values follow the pointer,
// the card's capacity as a dashed line, the out-of-memory point in red, and a table made from the same
// series. Colours and docs anchors are the core's, by term key (catalog.json "terms", data/terms.json).
import { make, fmt, SHADES, UNITS, app } from "./dom.js";

let loading = null;
// uPlot's IIFE build sets window.uPlot; loaded on the first chart, from this site (the CSP's script-src 'self').
export function loadUPlot() {
  if (window.uPlot) return Promise.resolve(window.uPlot);
  loading = loading || new Promise((ok, fail) => {
    const s = make("script", { src: "vendor/uPlot.iife.min.js" });
    s.addEventListener("load", () => ok(window.uPlot));
    s.addEventListener("error", () => { loading = null; fail(new Error("the chart library did not load")); });
    document.head.append(s);
  });
  return loading;
}

// A term's entry in the core's catalog (colour, docs anchor), by its key.
export const termInfo = (key) => (app.catalog && app.catalog.terms && app.catalog.terms[key]) || null;
// A term's colour: the core's for its key, else a shade picked by its key or name, the same in every chart.
export function colourOf(key, name = "") {
  const info = termInfo(key);
  if (info) return info.colour;
  let hash = 0;
  for (const ch of key || name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return SHADES[hash % SHADES.length];
}
// The docs page and section that explain a term, or "" when the catalog has none.
export const docsHref = (key) => (termInfo(key) ? `docs/${termInfo(key).anchor}` : "");

// spec: { label, x: { title, values, labels? }, terms: [{ key, name, values }] in the core's order (the
// bottom of the stack first), capacity: bytes per x value, oom: [{ index, text }], bars: one bar per x
// value (drawn across), pick: (term index) => void to make the legend's entries buttons, picked: key }.
export const totals = (spec) => spec.x.values.map((_, i) => spec.terms.reduce((a, t) => a + t.values[i], 0));
const xText = (spec, i) => (spec.x.labels ? spec.x.labels[i] : String(spec.x.values[i]));
const css = (name, fallback) => getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
const short = (v) => (v === null || v === undefined ? "" : v >= 1024 && v % 1024 === 0 ? `${v / 1024}k` : String(v));
// The memory axis's steps, in the page's unit (1, 2 or 5 times a power of ten), so that its labels are round.
const STEPS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000];

// Draw `spec` in `box`. A chart of the same terms, unit and number of points is updated in place
// (uPlot's setData: an answer per keystroke costs a redraw, not a new chart); any other is made anew.
export async function drawChart(box, spec) {
  const uPlot = await loadUPlot();
  const shape = JSON.stringify([spec.bars, spec.x.values.length, spec.x.labels, spec.terms.map((t) => t.key || t.name), app.state.unit]);
  const live = box.chart && box.chart.shape === shape ? box.chart : null;
  if (!live && box.chart) box.chart.u.destroy();
  const chart = live || { shape, figure: make("figure", { class: "chart", "data-testid": "chart" }),
    plot: make("div", { class: "plot", role: "img", "aria-label": `${spec.label}; the table holds the same numbers` }) };
  const legend = make("ul", { class: "legend", "data-testid": "chart-legend" });
  const point = make("p", { class: "chart-point", "data-testid": "chart-point" });
  chart.figure.replaceChildren(chart.plot, legend, make("p", { class: "chart-note", "data-testid": "chart-note", text: noteText(spec) }), point);
  Object.assign(chart, { spec, sums: totals(spec), rows: legendRows(spec, legend), point });
  chart.figure.dataset.capacityBytes = String(spec.capacity[0]);
  chart.figure.dataset.oom = spec.oom.map((m) => xText(spec, m.index)).join(",");
  if (live) chart.u.setData(data(spec));
  else {
    box.replaceChildren(chart.figure);
    const width = () => Math.max(260, Math.min(960, (box.clientWidth || 640)));
    const height = spec.bars ? 84 + 48 * spec.x.values.length : 300;
    chart.u = new uPlot(options(uPlot, chart, width(), height), data(spec), chart.plot);
    box.chart = chart;
    box.plot = chart.u;
    if (box.resizer) box.resizer.disconnect();
    box.resizer = new ResizeObserver(() => { if (Math.abs(chart.u.width - width()) > 8) chart.u.setSize({ width: width(), height }); });
    box.resizer.observe(box);
  }
  showPoint(chart, spec.bars && spec.x.values.length === 1 ? 0 : null);
  return chart.figure;
}

// The legend's values and the line under it at point i (the pointer's), or at the last point.
function showPoint(chart, i) {
  const { spec, sums, rows, point } = chart;
  if (i === null || i === undefined || i < 0) i = spec.x.values.length - 1;
  for (const [k, t] of spec.terms.entries()) rows[k].textContent = t.values[i] ? fmt(t.values[i]) : "–";
  rows.at(-1).textContent = fmt(spec.capacity[i]);
  point.textContent = `${spec.bars ? "" : `${spec.x.title} `}${xText(spec, i)}: ${fmt(sums[i])}${sums[i] > spec.capacity[i] ? " (does not fit)" : ""}`;
  point.dataset.index = String(i);
}

// The legend: a swatch, the term's name (a button where the chart picks terms) and its value at the
// pointer; the capacity last. Returns the value cells, in the terms' order then the capacity's.
function legendRows(spec, legend) {
  const cells = [];
  for (const [k, t] of spec.terms.entries()) {
    const swatch = make("span", { class: "swatch", style: `background:${colourOf(t.key, t.name)}` });
    const value = make("span", { class: "val" });
    const name = spec.pick ? make("button", { type: "button", "data-term": t.name, "aria-pressed": String(spec.picked === t.name) }, swatch, t.name)
      : make("span", {}, swatch, t.name);
    if (spec.pick) name.addEventListener("click", () => spec.pick(k));
    legend.append(make("li", { "data-key": t.key || "", "data-term": t.name }, name, " ", value));
    cells.push(value);
  }
  const cap = make("span", { class: "val" });
  legend.append(make("li", { class: "cap", "data-testid": "capacity-line" }, make("span", { class: "swatch dashed" }), "GPU memory ", cap));
  cells.push(cap);
  return cells;
}

function noteText(spec) {
  const cap = new Set(spec.capacity).size === 1 ? ` (${fmt(spec.capacity[0])})` : "";
  const oom = spec.oom.map((m) => m.text).join("; ");
  return `Dashed line: the GPU's memory${cap}.${oom ? ` Red: ${oom}.` : ""}`;
}

// The series as uPlot draws them: the stack from its top down, each cumulative and opaque, so that each
// fill covers the one above it; the capacity last, on top.
function data(spec) {
  const cum = [];
  let acc = spec.x.values.map(() => 0);
  for (const t of spec.terms) { acc = acc.map((a, i) => a + t.values[i]); cum.push(acc); }
  return [spec.bars ? spec.x.values.map((_, i) => i) : spec.x.values, ...cum.reverse(), spec.capacity];
}

function options(uPlot, chart, width, height) {
  const spec = chart.spec;
  const [div, unit] = UNITS[app.state.unit];
  const fg = css("--fg", "#1b1f24"), line = css("--line", "#d8dde3");
  const bars = spec.bars ? uPlot.paths.bars({ size: [0.5, 28] }) : undefined;
  const stack = [...spec.terms].reverse().map((t) => ({ label: t.name, fill: colourOf(t.key, t.name), stroke: colourOf(t.key, t.name),
    width: 0, points: { show: false }, paths: bars }));
  const capacity = { label: "GPU memory", stroke: fg, width: 1.5, dash: [6, 3], points: { show: false }, paths: spec.bars ? capacityPath : undefined };
  const xAxis = { stroke: fg, grid: { show: false }, ticks: { stroke: line }, side: spec.bars ? 3 : 2,
    values: (u, ticks) => ticks.map((v) => (spec.bars ? (Number.isInteger(v) && spec.x.labels[v]) || "" : short(v))),
    ...(spec.bars ? { splits: () => spec.x.values.map((_, i) => i), size: 70 } : { label: spec.x.title, space: 44 }) };
  const yAxis = { stroke: fg, grid: { stroke: line, width: 1 }, ticks: { stroke: line }, side: spec.bars ? 2 : 3, label: `memory (${unit})`,
    incrs: STEPS.map((g) => g * div), values: (u, ticks) => ticks.map((b) => String(+(b / div).toFixed(1))) };
  return {
    width, height, legend: { show: false }, cursor: { y: false, points: { show: false } },
    scales: { x: spec.bars ? { time: false, ori: 1, dir: -1, range: [-0.5, spec.x.values.length - 0.5] }
      : { time: false, distr: spec.x.values.every((v) => v > 0) ? 3 : 1, log: 2 },
    // from 0 past the larger of the highest stack and the card, from the data drawn (they change in place)
    y: { range: (u) => [0, Math.max(...u.data[1], ...u.data.at(-1)) * 1.05], ori: spec.bars ? 0 : 1, dir: 1 } },
    axes: [xAxis, yAxis],
    series: [{ label: spec.x.title }, ...stack, capacity],
    hooks: { setCursor: [(u) => showPoint(chart, u.cursor.idx)], draw: [(u) => drawOom(u, chart.spec, chart.sums)] },
  };
}

// The capacity under bars: a dashed mark across each bar at its card's memory.
function capacityPath(u, si, i0, i1) {
  const stroke = new Path2D();
  const across = Math.min(u.bbox.height / u.data[0].length, 28 * (window.devicePixelRatio || 1)) * 0.45;
  for (let i = i0; i <= i1; i++) {
    const y = u.valToPos(u.data[0][i], "x", true), x = u.valToPos(u.data[si][i], "y", true);
    stroke.moveTo(x, y - across); stroke.lineTo(x, y + across);
  }
  return { stroke, fill: null };
}

// The out-of-memory point: a red line across the plot at that x value (sweeps), or a red mark at the end
// of a bar over its card's memory, each with its words inside the plot.
function drawOom(u, spec, sums) {
  const ctx = u.ctx, r = window.devicePixelRatio || 1;
  ctx.save();
  ctx.strokeStyle = ctx.fillStyle = css("--bad", "#c62828");
  ctx.lineWidth = 2 * r;
  ctx.font = `${12 * r}px system-ui, sans-serif`;
  for (const m of spec.oom) {
    if (spec.bars) {
      const y = u.valToPos(m.index, "x", true), x = u.valToPos(sums[m.index], "y", true);
      const half = Math.min(u.bbox.height / spec.x.values.length, 28 * r) * 0.45;
      ctx.beginPath(); ctx.moveTo(x, y - half); ctx.lineTo(x, y + half); ctx.stroke();
      ctx.textAlign = "right";
      ctx.textBaseline = "bottom";
      ctx.fillText("out of memory", x, y - half - 2 * r);
      continue;
    }
    const x = u.valToPos(spec.x.values[m.index], "x", true);
    ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
    const right = x > u.bbox.left + u.bbox.width / 2;
    ctx.textAlign = right ? "right" : "left";
    ctx.fillText(m.text, x + (right ? -6 : 6) * r, u.bbox.top + 14 * r);
  }
  ctx.restore();
}

// The chart's numbers as a table: a row per x value, its total and every term, as many cells as the header.
export function chartTable(spec, id) {
  const sums = totals(spec);
  const head = make("tr", {}, make("th", { scope: "col", text: spec.x.title }), make("th", { scope: "col", class: "num", text: "device total" }),
    ...spec.terms.map((t) => make("th", { scope: "col", class: "num", "data-key": t.key || "", text: t.name })),
    make("th", { scope: "col", class: "num", text: "GPU memory" }));
  const body = spec.x.values.map((_, i) => make("tr", { class: sums[i] > spec.capacity[i] ? "over" : "" },
    make("th", { scope: "row", text: xText(spec, i) }), make("td", { class: "num", text: fmt(sums[i]) }),
    ...spec.terms.map((t) => make("td", { class: "num", text: fmt(t.values[i]) })),
    make("td", { class: "num", text: fmt(spec.capacity[i]) })));
  return make("table", { id, class: "chart-table" }, make("thead", {}, head), make("tbody", {}, ...body));
}

// Terms keyed across several stacks (sweep points, pins): every key of every stack, in the order they
// stack (a term first seen later goes after the term before it there); a stack without it reads 0.
export function termSeries(stacks) {
  const order = [];
  const id = (t) => t.key || t.name;
  for (const terms of stacks) {
    let after = -1;
    for (const t of terms) {
      const at = order.findIndex((o) => id(o) === id(t));
      if (at >= 0) { after = at; continue; }
      order.splice(after + 1, 0, { key: t.key || "", name: t.name });
      after += 1;
    }
  }
  return order.map((o) => ({ ...o, values: stacks.map((terms) => terms.filter((t) => id(t) === id(o)).reduce((a, t) => a + t.bytes, 0)) }));
}
