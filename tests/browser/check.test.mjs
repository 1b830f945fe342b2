// Checking against the user's own run on the page (issue 13): the pasted text goes to the core, the page
// shows the CLI's comparison, the likely explanation, and offers the calibration record to download.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { start, waitForResult } from "./harness.mjs";
import { ROOT } from "../pyodide/load.mjs";

let h;
before(async () => { h = await start(); });
after(async () => { await h?.close(); });

// shared/calibration gpt2-train-amp-adamw-b8-s1024-eager, as max_memory_* print it
const MEASURED = "torch.cuda.max_memory_allocated() = 22513687040\ntorch.cuda.max_memory_reserved() = 23452450816\n";

test("pasted numbers are compared with the estimate, the unstated kernel is named, and a record is offered", async () => {
  const ctx = await h.browser.newContext({ acceptDownloads: true });
  const page = await ctx.newPage();
  // the run used eager attention; the page says sdpa (the default)
  await page.goto(h.base + "?model=gpt2&amp=bf16&w=fp32&batch=8&seq=1024");
  await waitForResult(page);
  await page.fill("#measured-text", MEASURED);
  await page.click("#check-run");
  await page.waitForSelector('[data-testid="check-verdict"]');
  const dir = mkdtempSync(join(tmpdir(), "gmp-check-"));
  const file = join(dir, "m.txt");
  writeFileSync(file, MEASURED);
  const py = process.env.PYTHON || "python3";
  const cli = JSON.parse(execFileSync(py, ["-m", "pycore", "check", "--model", "gpt2", "--autocast", "bf16", "--batch", "8",
    "--seq", "1024", "--measured", file, "--json"], { cwd: ROOT }).toString()).check;
  assert.equal(await page.textContent('[data-testid="check-verdict"]'), cli.verdict);
  assert.equal(cli.verdict, "measured higher");
  const first = await page.textContent("#check-explanations li:first-child");
  assert.match(first, /^attention kernel: attention 'eager'/);
  const cells = await page.$$eval("#check-table tbody tr:first-child td", (tds) => tds.map((td) => td.textContent));
  assert.equal(cells[0], `${(22513687040 / 2 ** 30).toFixed(2)} GiB`);
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#check-record")]);
  const record = JSON.parse(await (await download.createReadStream()).toArray().then((c) => Buffer.concat(c).toString()));
  assert.equal(record.measured.peak_allocated_bytes, 22513687040);
  assert.equal(record.workload.attention, "sdpa");          // the configuration as stated: the user corrects it
  assert.equal(record.hf_config.model_type, "gpt2");
  assert.ok(!page.url().includes("measured") && !page.url().includes("22513687040"));   // the text stays out of the link
  await ctx.close();
});

test("text with no figure gets the core's message naming the field", async () => {
  const ctx = await h.browser.newContext();
  const page = await ctx.newPage();
  await page.goto(h.base + "?model=gpt2");
  await waitForResult(page);
  await page.fill("#measured-text", "loss 2.31 at step 100 <img src=x onerror=alert(1)>");
  await page.click("#check-run");
  await page.waitForFunction(() => /measured\.text/.test(document.querySelector("#check-status").textContent));
  assert.equal(await page.$$eval("#check-answer img", (x) => x.length), 0);
  await ctx.close();
});
