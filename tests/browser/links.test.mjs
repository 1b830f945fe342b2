// Copy as command and --url (issue 12): the CLI's link opens the page on the CLI's answer, and the page's
// "Copy as command" gives back the command that produced it; the exports come from the core.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { start, waitForResult } from "./harness.mjs";
import { ROOT } from "../pyodide/load.mjs";

let h;
before(async () => { h = await start(); });
after(async () => { await h?.close(); });

const py = process.env.PYTHON || "python3";
const cli = (args) => execFileSync(py, ["-m", "pycore", ...args], { cwd: ROOT }).toString();

for (const args of [
  ["estimate", "--model", "llama-3.1-8b", "--mode", "lora", "--batch", "4", "--seq", "4096", "--checkpointing", "--gpu", "rtx-4090-24gb"],
  ["estimate", "--model", "llama-2-7b", "--autocast", "bf16", "--optimizer", "adamw_8bit", "--gpu", "a100-80gb"],
  ["estimate", "--model", "qwen3-30b-a3b", "--mode", "inference", "--weights", "int4", "--batch", "16", "--new-tokens", "256"],
  ["serve", "--model", "llama-3.1-8b", "--engine", "vllm", "--max-model-len", "32768", "--gpu-memory-utilization", "0.85"],
]) {
  test(`--url and Copy as command round-trip: ${args.slice(0, 4).join(" ")}`, async () => {
    const url = cli([...args, "--url", h.base]).trim();
    const expected = JSON.parse(cli([...args, "--json"]));
    const ctx = await h.browser.newContext();
    const page = await ctx.newPage();
    await page.goto(url);
    const result = await waitForResult(page);
    assert.equal(result.peak, (expected.device_total_bytes / 2 ** 30).toFixed(2));
    await page.click("#copy-command");
    await page.waitForSelector('[data-testid="command-line"]:not([hidden])');
    const command = await page.textContent('[data-testid="command-line"]');
    assert.match(command, /^python -m pycore (estimate|serve) /);
    const again = JSON.parse(cli([...command.split(" ").slice(3), "--json"]));
    assert.equal(again.device_total_bytes, expected.device_total_bytes);
    // and the command's link is the page's own
    assert.equal(cli([...command.split(" ").slice(3), "--url", h.base]).trim(), page.url());
    await ctx.close();
  });
}

test("the exports are the core's JSON result and Markdown table", async () => {
  const ctx = await h.browser.newContext({ acceptDownloads: true });
  const page = await ctx.newPage();
  await page.goto(h.base + "?model=gpt2&w=fp32&batch=8&seq=1024");
  await waitForResult(page);
  const read = async (d) => Buffer.concat(await (await d.createReadStream()).toArray()).toString();
  const [json] = await Promise.all([page.waitForEvent("download"), page.click("#export-json")]);
  const res = JSON.parse(await read(json));
  const expected = JSON.parse(cli(["estimate", "--model", "gpt2", "--weights", "fp32", "--batch", "8", "--seq", "1024", "--json"]));
  assert.equal(res.device_total_bytes, expected.device_total_bytes);
  const [md] = await Promise.all([page.waitForEvent("download"), page.click("#export-md")]);
  const text = await read(md);
  assert.match(text, /^\*\*gpt2\*\* on /);
  assert.ok(text.includes(`| ${expected.breakdown.bytes.toLocaleString("en-US")} |`), text);
  await ctx.close();
});
