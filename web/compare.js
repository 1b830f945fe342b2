import { PARAMS, parseQuery, toRequest } from "./state.js";
import { $, form, make, fmt, app } from "./dom.js";
import { ask } from "./client.js";
import { topTerms, barSpec } from "./render.js";
import { drawChart, termSeries, totals } from "./chart.js";

// ---- compare -------------------------------------------------------------------
// Each pin is labelled by what tells it apart (issue 25, point 7): its model, mode and GPU, then every
// setting whose value differs between the pins, in the form's words; a table gives each term's bytes
// per pin and its difference from the first pin.

// A parameter in the form's words: the text of its label ("Gradient checkpointing", "Batch size").
function words(param) {
  const el = form.elements[param];
  const label = el && el.closest && el.closest("label");
  const own = label ? [...label.childNodes].filter((n) => n.nodeType === 3).map((n) => n.textContent).join(" ").trim() : "";
  return own || param.replace(/_/g, " ");
}
function shown(param, value) {
  if (typeof value === "boolean") return value ? "on" : "off";
  if (value === null || value === undefined || value === "") return "default";
  return String(value);
}
function labels(states) {
  const keys = ["model", "source", "gpu", ...Object.keys(PARAMS), "mem"];
  const differ = [...new Set(keys)].filter((k) => new Set(states.map((s) => JSON.stringify(s[k] ?? null))).size > 1);
  return states.map((s, i) => {
    const base = `${i + 1}: ${s.source === "catalog" ? s.model : s.source}, ${s.mode}, ${s.gpu}`;
    const extra = differ.filter((k) => !["model", "gpu", "mode"].includes(k)).map((k) => `${words(k)} ${shown(k, s[k])}`);
    return extra.length ? `${base}; ${extra.join(", ")}` : base;
  });
}

export async function renderCompare() {
  const box = $("#compare");
  if (!app.state.pins.length) { box.replaceChildren(); return; }
  const parsed = [];
  for (const pin of app.state.pins) parsed.push((await parseQuery(pin, app.catalog)).state);
  const names = labels(parsed);
  const rows = [];
  const answers = [];
  for (const [i, pin] of app.state.pins.entries()) {
    const { response } = await ask(toRequest(parsed[i], app.catalog, false));
    const label = names[i];
    const cell = response.status === "ok" ? `${fmt(response.result.device_total_bytes)} ${response.result.fits ? "fits" : "does not fit"}`
      : (response.errors || [{ message: "not computed" }])[0].message;
    if (response.status === "ok") answers.push([label, response.result]);
    const rm = make("button", { type: "button", text: "Unpin", "aria-label": `Unpin ${label}` });
    rm.addEventListener("click", () => { app.state.pins.splice(i, 1); app.update(); });
    const open = make("a", { href: `?${pin}`, text: label });
    rows.push(make("tr", {}, make("td", {}, open), make("td", { class: "num", text: cell }), make("td", {}, rm)));
  }
  // The pinned answers as the page's chart, one bar per pin on one scale, each against its own card; the
  // pins' table says what tells them apart, the table term by term is made from the same series.
  const stacks = answers.map(([, r]) => topTerms(r.breakdown).filter((t) => t.bytes > 0));
  const spec = barSpec("The pinned configurations' device memory", stacks, answers.map(([label]) => `pin ${label.split(":")[0]}`),
    answers.map(([, r]) => r.gpu.memory_bytes), termSeries(stacks));
  const chart = make("div", { id: "compare-chart", "data-testid": "compare-chart" });
  box.replaceChildren(make("h2", { text: "Compare" }), chart,
    make("table", { id: "compare-pins" }, make("tbody", {}, ...rows)), ...(answers.length ? [differences(spec)] : []));
  if (answers.length) await drawChart(chart, spec);
}

// Term by term, from the chart's series: each pin's bytes and, for the second pin on, its difference from
// the first; the device total and each pin's GPU memory last.
function differences(spec) {
  const pins = spec.x.labels;
  const signed = (b) => `${b > 0 ? "+" : b < 0 ? "−" : "±"}${fmt(Math.abs(b))}`;
  const head = make("tr", {}, make("th", { scope: "col", text: "term" }),
    ...pins.map((p) => make("th", { scope: "col", class: "num", text: p })),
    ...pins.slice(1).map((p) => make("th", { scope: "col", class: "num", text: `${p} − ${pins[0]}` })));
  const row = (name, values) => make("tr", {}, make("th", { scope: "row", text: name }),
    ...values.map((b) => make("td", { class: "num", text: fmt(b) })),
    ...values.slice(1).map((b) => make("td", { class: `num ${b > values[0] ? "pos" : b < values[0] ? "neg" : ""}`, text: signed(b - values[0]) })));
  const body = spec.terms.map((t) => row(t.name, t.values));
  body.push(row("device total", totals(spec)), row("GPU memory", spec.capacity));
  return make("table", { class: "diff", "data-testid": "compare-diff" }, make("caption", { text: "Term by term" }),
    make("thead", {}, head), make("tbody", {}, ...body));
}
