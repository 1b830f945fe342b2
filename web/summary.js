// The answer at a glance (issue 25): the summary bar that stays in view (verdict, peak, headroom, the top
// fix), the small status region a screen reader reads on each new answer, moving the focus to the new
// verdict after Apply or Use, and the launch command of the engine or framework the answer is about.
import { $, make, text, fmt, VERDICT_KEYS, VERDICT_WORDS, app } from "./dom.js";

export function renderSummary(res) {
  const key = VERDICT_KEYS[res.verdict] || (res.fits ? "fits" : "does-not-fit");
  const v = $("#sum-verdict");
  v.className = `verdict ${key}`;
  text(v, VERDICT_WORDS[key]);
  text($("#sum-peak"), fmt(res.device_total_bytes));
  const head = res.headroom_bytes;
  const room = head >= 0 ? `${fmt(head)} to spare` : `${fmt(-head)} over`;
  text($("#sum-headroom"), `${room} on ${res.gpus > 1 ? `${res.gpus} × ` : ""}${res.gpu.name}`);
  setTopFix("");
  // the only live region the answer updates: one short sentence, not the whole results section
  text($("#live"), `${VERDICT_WORDS[key]}: ${fmt(res.device_total_bytes)}, ${room}.`);
  if (app.focusAnswer) { app.focusAnswer = false; $("#verdict").focus(); }
}

// The first fix the core proposes (a fit plan or a suggestion), or nothing when the answer fits.
export function setTopFix(fix) {
  text($("#sum-fix"), fix ? `Top fix: ${fix}` : "");
}

// Serving: the engine's command line (launch_command). Training: the TrainingArguments, model and LoRA
// keyword arguments and the launcher of run_arguments. Both written by the core.
export function renderLaunch(res) {
  const box = $("#launch");
  let body = "";
  let title = "Launch command";
  if (res.launch_command) body = res.launch_command;
  else if (res.run_arguments) {
    const run = res.run_arguments;
    title = `Run arguments (${run.framework})`;
    const call = (name, args) => `${name}(${Object.entries(args).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ")})`;
    const names = { training_arguments: "TrainingArguments", model_kwargs: "from_pretrained", lora_config: "LoraConfig" };
    body = Object.entries(run).filter(([k, v]) => v && typeof v === "object" && !Array.isArray(v))
      .map(([k, v]) => call(names[k] || k, v)).concat(run.launch ? [run.launch] : []).join("\n");
  }
  box.hidden = !body;
  text($("#launch-title"), title);
  text($("#launch-text"), body);
  text($("#launch-status"), "");
}

export function wireLaunchCopy() {
  $("#launch-copy").addEventListener("click", async () => {
    const body = $("#launch-text").textContent;
    try { await navigator.clipboard.writeText(body); text($("#launch-status"), "Copied."); }
    catch { text($("#launch-status"), "Select the text above to copy it."); }
  });
}
