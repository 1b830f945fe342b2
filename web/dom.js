// The page's shared pieces: the DOM helpers, the units and colours, and `app`, the state every module
// reads (the configuration, the catalog, the last configuration the core accepted).
export const app = {
  catalog: null,
  state: null,
  lastGood: null,          // the last state the core accepted
  fromURL: false,          // the state came from a link: a value the core rejects falls back to its default
  workerReady: false,
  formReady: false,        // the form holds the link's state: only then may the worker's "ready" compute
  update: null,            // app.js's update loop, called by the panels after a change
};
export const $ = (sel) => document.querySelector(sel);
export const form = $("#form");
// Parts of one term, told apart by shade in the expanded bar; terms the core's catalog has no colour for
// (catalog.json "terms", by key: web/chart.js).
export const SHADES = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
export const UNITS = { gib: [2 ** 30, "GiB"], gb: [1e9, "GB"] };
// A request that takes longer than this is abandoned and the worker restarted (an estimate takes
// milliseconds; only a pathological input could take seconds).
export const REQUEST_TIMEOUT_MS = 8000;
// A layout search evaluates thousands of layouts (under a second natively, a few in the browser).
export const PLAN_TIMEOUT_MS = 60000;

export function text(el, value) { el.textContent = value; return el; }
export function make(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "text") el.textContent = v;
    else if (k === "class") el.className = v;
    else if (k === "style") el.style.cssText = v;       // CSSOM: allowed under the page's CSP
    else el.setAttribute(k, v);
  }
  for (const c of children) el.append(c);
  return el;
}
// The core's verdict (fits, at risk: the error band straddles the GPU's memory, does not fit) and its band.
export const VERDICT_KEYS = { "fits": "fits", "at risk": "at-risk", "does not fit": "does-not-fit", "does not start": "does-not-fit" };
export const VERDICT_WORDS = { "fits": "fits", "at-risk": "at risk", "does-not-fit": "does not fit" };
export function showVerdict(res) {
  const key = VERDICT_KEYS[res.verdict] || (res.fits ? "fits" : "does-not-fit");
  const v = $("#verdict");
  v.className = `verdict ${key}`;
  v.dataset.verdict = key;                               // the key for styles and tests; the badge says it in words
  text(v, VERDICT_WORDS[key]);
  text($("#band"), res.error_band ? res.error_band.basis : "");
  return key;
}
// At risk with room at the estimate: the band's upper edge is over the card (issue 22).
export function atRiskNote(res) {
  const band = res.bands && res.bands.device_total;
  return res.verdict === "at risk" && band ? ` at the estimate, but the band reaches ${fmt(band.high_bytes)}` : "";
}
// The core's first error as "field: message", or what to say when there is none (a timed-out request).
export function errorText(response, otherwise) {
  return response.errors ? `${response.errors[0].field}: ${response.errors[0].message}` : otherwise;
}
export function fmt(bytes) { const [d, u] = UNITS[app.state.unit]; return `${(bytes / d).toFixed(2)} ${u}`; }
export function showMessages(list) {
  $("#messages").replaceChildren(...list.map((m) => make("div", { class: "msg", text: typeof m === "string" ? m : m.text })));
}
