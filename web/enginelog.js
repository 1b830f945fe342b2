import { $, text, make, errorText, REQUEST_TIMEOUT_MS, app } from "./dom.js";
import { ask } from "./client.js";

// ---- an engine's start-up log against the planner ---------------------------------
// The pasted log goes to the core as it is (pycore.api.engine_log bounds, reads and compares it, with
// the GPU and, for what the log omits, the launch command); the page only renders the rows.
let recordUrl = null;
export async function runEngineLog() {
  const body = $("#engine-log-text").value;
  const limit = app.catalog.request.limits.max_measured_chars;
  if (!body.trim()) { text($("#engine-log-status"), "Paste the engine's start-up log first."); return; }
  if (body.length > limit) { text($("#engine-log-status"), `The log is longer than ${limit.toLocaleString()} characters; paste its start-up part only.`); return; }
  text($("#engine-log-status"), "Comparing…");
  const req = { text: body, gpu: app.state.gpu };
  const command = $("#engine-log-command").value.trim();
  if (command) req.command = command;
  const { response } = await ask(JSON.stringify(req), REQUEST_TIMEOUT_MS, "engine_log");
  if (response.status !== "ok") {
    text($("#engine-log-status"), errorText(response, "The comparison did not finish."));
    $("#engine-log-answer").replaceChildren();
    return;
  }
  text($("#engine-log-status"), "");
  const r = response.result;
  const num = (v) => (v === null || v === undefined ? "–" : typeof v === "number" ? v.toLocaleString() : String(v));
  const rows = r.rows.map((row) => make("tr", {}, make("th", { scope: "row", text: row.label }),
    make("td", { class: "num", text: `${num(row.logged)} ${row.unit}` }), make("td", { class: "num", text: num(row.estimated) }),
    make("td", { class: "num", text: row.error_pct === null ? "" : `${row.error_pct >= 0 ? "+" : "−"}${Math.abs(row.error_pct).toFixed(2)}%` })));
  const parts = [make("p", { "data-testid": "engine-log-summary", text: `${r.engine} ${r.version ?? ""} log: ${r.rows.length} figures compared.` }),
    make("table", { id: "engine-log-table" },
      make("thead", {}, make("tr", {}, ...["", "logged", "estimated", "error"].map((h) => make("th", { scope: "col", text: h })))),
      make("tbody", {}, ...rows)),
    make("p", { "data-testid": "engine-log-gap", text: `Gap: ${r.explanation}` })];
  if (recordUrl) URL.revokeObjectURL(recordUrl);
  recordUrl = null;
  if (r.records.length) {
    recordUrl = URL.createObjectURL(new Blob([r.records.map((x) => JSON.stringify(x)).join("\n") + "\n"], { type: "application/json" }));
    parts.push(make("p", {}, make("a", { href: recordUrl, download: "engine-log-records.jsonl", id: "engine-log-records" },
      "Download these figures as reference records"), " (the format of the planner's serving references)"));
  }
  $("#engine-log-answer").replaceChildren(...parts);
}
