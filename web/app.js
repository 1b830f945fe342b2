// The page: reads the form and the URL, asks the worker for estimates, renders the answers.
// All arithmetic and all validation happen in pycore; the modules format, draw and route the
// core's messages to the field they name: dom.js (helpers and the shared state), client.js (the
// worker), form.js, render.js (the answer), and one module per panel: plan, compare, hub, sweep, check.
import { defaults, paramOf, parseQuery, registerParams, toQuery, toRequest } from "./state.js";
import { $, form, REQUEST_TIMEOUT_MS, text, make, errorText, showMessages, app } from "./dom.js";
import { startWorker, describeRequest, ask } from "./client.js";
import { buildServeFields, buildForm, fillPickers, stateToForm, fieldError, readControl, syncVisibility } from "./form.js";
import { renderServe, renderServeSolved, renderMain, renderSolved } from "./render.js";
import { findGpuCount } from "./plan.js";
import { renderCompare } from "./compare.js";
import { hubCache, fetchHub } from "./hub.js";
import { runSweep } from "./sweep.js";
import { runCheck } from "./check.js";
import { runEngineLog } from "./enginelog.js";
import { renderSummary, renderLaunch, wireLaunchCopy } from "./summary.js";
import { wirePickers, readGpuCount } from "./pickers.js";

// ---- the update loop --------------------------------------------------------------
let pushing = false;
let latestShown = 0;

app.update = update;
async function update({ push = true } = {}) {
  if (!app.workerReady) return;
  for (let attempt = 0; attempt < 8; attempt++) {
    const { id, response } = await ask(toRequest(app.state, app.catalog, false));
    if (id < latestShown) return;
    // the link changes unless the core refused a value (it checks them, not the page); a slow answer keeps it
    if (response.status === "timeout") { await pushLink(push); if (response.repeated) noteRepeated("The estimate"); return; }
    latestShown = id;
    if (response.status === "ok") {
      app.lastGood = structuredClone(app.state);
      await pushLink(push);
      const serving = app.state.mode === "serve" && response.result.engine && response.result.engine !== "hf";
      if (serving) renderServe(response.result); else renderMain(response.result);
      renderLaunch(response.result);
      renderSummary(response.result);
      document.body.dataset.query = await toQuery(app.state, app.catalog);     // which configuration the result is for
      document.body.dataset.computed = String(id);
      if (!document.body.dataset.firstResultMs) document.body.dataset.firstResultMs = String(Math.round(performance.now()));
      const solvedRequest = toRequest(app.state, app.catalog, true);
      if (!serving && !response.result.fits) solvedRequest.fit = { limit: 5 };      // the cheapest combinations that fit
      const solved = await ask(solvedRequest);
      if (solved.id < latestShown) return;
      if (solved.response.repeated) noteRepeated(describeRequest("estimate", solvedRequest));
      if (solved.response.status !== "ok") return;
      if (serving) renderServeSolved(solved.response.result);
      else if (solved.response.result.explanations) renderSolved(solved.response.result);
      renderCompare();
      if (app.state.sweep && !app.sweepDrawn) { app.sweepDrawn = true; runSweep(); }    // a link with a sweep draws it
      return;
    }
    if (!rejected(response.errors[0])) return;
  }
}

async function pushLink(push) {
  const query = await toQuery(app.state, app.catalog);
  if (push && !pushing && `?${query}` !== location.search && !(query === "" && location.search === "")) {
    history.pushState(null, "", query ? `?${query}` : location.pathname);
  }
}

// A request that timed out before is not sent again: say so, once, beside the other messages.
function noteRepeated(what) {
  const line = `${what} took too long on this configuration before and is not run again; change a setting to continue.`;
  const messages = [...$("#messages").children].map((c) => c.textContent);
  if (!messages.some((m) => m.startsWith(what))) showMessages([...messages, line]);
}

// The core refused the request: say so next to the field it names. A value from a link falls back
// to its default (and the page computes again); a typed value stays, and the last result stays shown.
function rejected(err) {
  const param = paramOf(err.field);
  const where = param ? `“${param}” (${err.field})` : err.field;
  if (!param) {
    // no control holds the field at fault (the request as a whole, say): name it and keep every setting
    showMessages([`${err.field}: ${err.message}`]);
    return false;
  }
  if (app.fromURL || !app.lastGood) {
    const d = defaults(app.catalog);
    const messages = [...$("#messages").children].map((c) => c.textContent);
    messages.push(`URL parameter ${where}: ${err.message}; using the default.`);
    if (param === "cfg" || param === "dims") { app.state.source = "catalog"; app.state[param] = null; }
    else if (param in d && app.state[param] !== d[param]) app.state[param] = d[param];
    else { app.state = { ...d, pins: app.state.pins }; messages.push("Using the default configuration."); }
    showMessages(messages);
    stateToForm();
    fieldError(param, err.message);
    return true;
  }
  if (param === "cfg") showMessages([`config.json: ${err.message}`]);      // the config has no control of its own to sit by
  else fieldError(param, err.message);
  app.state = structuredClone(app.lastGood);
  return false;
}

async function loadFromURL() {
  const { state: s, messages } = await parseQuery(location.search, app.catalog);
  app.state = s;
  if (app.state.hub && hubCache.has(app.state.hub)) app.state.cfg = hubCache.get(app.state.hub);
  app.fromURL = true;
  showMessages(messages);
  stateToForm();
  for (const m of messages) fieldError(m.param, m.text);
}

form.addEventListener("input", (event) => {
  const el = event.target;
  if (["model-search", "gpu-search", "config-file"].includes(el.id)) return;    // the searches list; a pick changes
  if (el.id === "gpu-n") {
    const r = readGpuCount(app.state, el.value);
    fieldError("gpu-n", r.why ? `“${el.value.slice(0, 12)}” ${r.why}.` : "");
    if (r.why) return;
    app.state[r.param] = r.value;
    if (form.elements[r.param]) form.elements[r.param].value = String(r.value);
  }
  else if (!readControl(el)) return;
  app.fromURL = false;
  showMessages([]);
  syncVisibility();
  update();
});
form.addEventListener("submit", (e) => e.preventDefault());
// A pick from a search list: the same path as choosing in the select.
wirePickers((param, value) => {
  form.elements[param].value = value;
  readControl(form.elements[param]);
  app.fromURL = false;
  showMessages([]);
  stateToForm();
  update();
});
wireLaunchCopy();
$("#config-file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (file) { $("#config-text").value = await file.slice(0, app.catalog.request.limits.max_json_chars + 1).text(); readControl($("#config-text")); update(); }
});
$("#config-text").addEventListener("dragover", (e) => e.preventDefault());
$("#config-text").addEventListener("drop", async (e) => {
  e.preventDefault();
  const file = e.dataTransfer.files[0];
  if (file) { $("#config-text").value = await file.slice(0, app.catalog.request.limits.max_json_chars + 1).text(); app.state.source = "config"; readControl($("#config-text")); stateToForm(); update(); }
});
// A training config the user already has (issue 23): the core reads it into the page's link, listing the
// fields it used, read and ignored; the page then loads that link as it loads any other.
async function readTrainingConfig() {
  const body = $("#train-config-text").value;
  if (!body.trim()) return;
  const limit = app.catalog.request.limits.max_json_chars;
  if (body.length > limit) { text($("#train-config-status"), `The text is longer than ${limit.toLocaleString()} characters.`); return; }
  text($("#train-config-status"), "Reading…");
  const { response } = await ask(JSON.stringify({ text: body, base: toRequest(app.state, app.catalog, false) }), REQUEST_TIMEOUT_MS, "from_config");
  if (response.status !== "ok") { text($("#train-config-status"), errorText(response, "The config could not be read.")); return; }
  const r = response.result;
  history.pushState(null, "", `?${r.query}`);
  await loadFromURL();
  app.fromURL = false;
  await update({ push: false });
  text($("#train-config-status"), `Read as a ${r.kind} config: ${r.used.length} fields used.`);
  const line = (label, items) => (items.length ? [make("p", {}, make("strong", { text: `${label}: ` }), items.join(", "))] : []);
  $("#train-config-fields").replaceChildren(
    ...line("Used", r.used.map((u) => `${u.field} → ${u.sets} = ${JSON.stringify(u.value)}`)),
    ...line("Read (nothing to set)", r.read_only),
    ...line("Not on this page (the command line reads them)", r.not_on_page),
    ...line("Ignored", r.ignored),
    ...r.notes.map((n) => make("p", { class: "note", text: n })));
}
$("#train-config-read").addEventListener("click", readTrainingConfig);
$("#train-config-text").addEventListener("dragover", (e) => e.preventDefault());
$("#train-config-text").addEventListener("drop", async (e) => {
  e.preventDefault();
  const file = e.dataTransfer.files[0];
  if (file) { $("#train-config-text").value = await file.slice(0, app.catalog.request.limits.max_json_chars + 1).text(); readTrainingConfig(); }
});
// A dropped adapter_config.json fills the PEFT field (the core reads and checks it).
const peftBox = form.elements.peft;
peftBox.addEventListener("dragover", (e) => e.preventDefault());
peftBox.addEventListener("drop", async (e) => {
  e.preventDefault();
  const file = e.dataTransfer.files[0];
  if (file) { peftBox.value = await file.slice(0, app.catalog.request.limits.max_json_chars + 1).text(); if (readControl(peftBox)) update(); }
});
for (const b of document.querySelectorAll(".unit-toggle button")) {
  b.addEventListener("click", () => { app.state.unit = b.dataset.unit; stateToForm(); update(); });
}
$("#plan").addEventListener("click", findGpuCount);
$("#check-run").addEventListener("click", runCheck);
$("#engine-log-run").addEventListener("click", runEngineLog);
$("#sweep-run").addEventListener("click", runSweep);
$("#copy").addEventListener("click", async () => {
  try { await navigator.clipboard.writeText(location.href); text($("#copied"), "Link copied."); }
  catch { text($("#copied"), "Copy this address from the address bar."); }
});
// Copy as command and the exports: the core writes the command line, the link and the Markdown.
async function linksFor() {
  const { response } = await ask(toRequest(app.state, app.catalog, false), REQUEST_TIMEOUT_MS, "links");
  if (response.status !== "ok") { text($("#copied"), errorText(response, "")); return null; }
  return response.result;
}
$("#copy-command").addEventListener("click", async () => {
  const links = await linksFor();
  if (!links) return;
  text($("#command-line"), links.command);
  $("#command-line").hidden = false;
  try { await navigator.clipboard.writeText(links.command); text($("#copied"), "Command copied."); }
  catch { text($("#copied"), "Copy the command shown below."); }
});
function download(name, type, body) {
  const url = URL.createObjectURL(new Blob([body], { type }));
  const a = make("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
$("#export-json").addEventListener("click", async () => {
  const { response } = await ask(toRequest(app.state, app.catalog, false));
  if (response.status === "ok") download("estimate.json", "application/json", JSON.stringify(response.result, null, 1));
});
$("#export-md").addEventListener("click", async () => {
  const links = await linksFor();
  if (links) download("estimate.md", "text/markdown", links.markdown);
});
$("#pin").addEventListener("click", async () => {
  const q = await toQuery(app.state, app.catalog, { withPins: false });
  if (app.state.pins.length >= 4) app.state.pins.shift();
  app.state.pins.push(q);
  update();
});
$("#theme").addEventListener("click", () => {
  const root = document.documentElement;
  const dark = root.dataset.theme ? root.dataset.theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  root.dataset.theme = dark ? "light" : "dark";
  try { localStorage.setItem("theme", root.dataset.theme); } catch {}
});
try { const t = localStorage.getItem("theme"); if (t) document.documentElement.dataset.theme = t; } catch {}
window.addEventListener("popstate", async () => { pushing = true; await loadFromURL(); await update({ push: false }); pushing = false; });

// The worker (started by boot.js) comes first: Python's start-up is the long pole, the form is built meanwhile.
startWorker();
app.catalog = await (await fetch("catalog.json")).json();
registerParams(app.catalog);
buildServeFields();
app.state = defaults(app.catalog);
buildForm();
await loadFromURL();
if (app.state.hub && !app.state.cfg) {             // a shared link with a Hub id: fetch it again (the link is the action)
  $("#hub-id").value = app.state.hub;
  if (!(await fetchHub(app.state.hub))) { app.state.source = "catalog"; app.state.hub = null; }
  stateToForm();
}
app.formReady = true;
update({ push: false });
