import { toRequest } from "./state.js";
import { $, text, make, errorText, fmt, app } from "./dom.js";
import { ask } from "./client.js";

// ---- checking against the user's own run ------------------------------------------
// The pasted text goes to the core as it is (the core bounds and parses it); the page only renders.
let checkRecordUrl = null;
export async function runCheck() {
  const textValue = $("#measured-text").value;
  const limit = app.catalog.request.limits.max_measured_chars;
  if (textValue.length > limit) { text($("#check-status"), `The text is longer than ${limit.toLocaleString()} characters; paste the memory summary or the nvidia-smi table only.`); return; }
  text($("#check-status"), "Comparing…");
  const req = toRequest(app.state, app.catalog, false);
  req.measured = { text: textValue };
  const { response } = await ask(req);
  if (response.status !== "ok") {
    text($("#check-status"), errorText(response, "The comparison did not finish."));
    $("#check-answer").replaceChildren();
    return;
  }
  text($("#check-status"), "");
  const ck = response.result.check;
  // The gap in bytes, measured minus estimated; as a share of the measurement only while that reads
  // sensibly (a small measured figure would make it "−120.8%"): beyond ±100% the ratio instead.
  const gap = (r) => {
    const g = r.measured_bytes - r.estimated_bytes;
    const f = r.gap_fraction || 0;
    const share = Math.abs(f) <= 1 ? `${f >= 0 ? "+" : "−"}${Math.abs(100 * f).toFixed(1)}%`
      : `the estimate is ${(r.estimated_bytes / r.measured_bytes).toFixed(1)}× the measurement`;
    return `${g >= 0 ? "+" : "−"}${fmt(Math.abs(g))} (${share})`;
  };
  const rows = ck.rows.map((r) => make("tr", {}, make("th", { scope: "row", text: r.quantity }),
    make("td", { class: "num", text: fmt(r.measured_bytes) + (r.measured_is_lower_bound ? " (at least)" : "") }),
    make("td", { class: "num", text: fmt(r.estimated_bytes) }), make("td", { class: "num", text: gap(r) }),
    make("td", { class: "src", text: r.source })));
  const table = make("table", { id: "check-table" },
    make("thead", {}, make("tr", {}, ...["", "measured", "estimated", "gap (measured − estimated)", "read from"].map((h) => make("th", { scope: "col", text: h })))),
    make("tbody", {}, ...rows));
  const parts = [make("p", { "data-testid": "check-verdict", class: `verdict ${ck.verdict === "agrees" || ck.verdict.startsWith("agrees") ? "fits" : "at-risk"}`,
    text: ck.verdict }), make("p", { text: `Read: ${ck.formats.join(", ")}. ${ck.agreement || `Within ±${(100 * ck.tolerance_fraction).toFixed(0)}% counts as agreement`}.` }), table];
  if (ck.explanations.length) {
    parts.push(make("p", { text: "What most likely explains the gap:" }),
      make("ul", { id: "check-explanations" }, ...ck.explanations.map((e) => make("li", { text: `${e.assumption}: ${e.text}` }))));
  }
  for (const n of ck.notes) parts.push(make("p", { class: "note", text: n }));
  if (checkRecordUrl) URL.revokeObjectURL(checkRecordUrl);
  checkRecordUrl = null;
  if (ck.record) {
    checkRecordUrl = URL.createObjectURL(new Blob([JSON.stringify(ck.record) + "\n"], { type: "application/json" }));
    parts.push(make("p", {}, make("a", { href: checkRecordUrl, download: `${ck.record.id}.jsonl`, id: "check-record" },
      "Download this run as a calibration record"), ` (${ck.record_note}; send it to us to widen the measured set)`));
  } else {
    parts.push(make("p", { class: "note", text: `No calibration record: ${ck.record_note}.` }));
  }
  $("#check-answer").replaceChildren(...parts);
}
