// Issue 25: the page passes axe-core's automated accessibility check (self-hosted: the library is read
// from node_modules and injected into the page; nothing is fetched) with no serious or critical
// violations, on a training answer with the GPU count and a serving answer.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { start, waitForResult } from "./harness.mjs";

function axeSource() {
  const paths = [process.env.AXE_CORE, (() => { try { return createRequire(import.meta.url).resolve("axe-core/axe.min.js"); } catch { return null; } })()];
  for (const p of paths) { try { if (p) return readFileSync(p, "utf8"); } catch {} }
  return null;
}
const AXE = axeSource();

let h;
before(async () => { h = await start(); });
after(async () => { await h?.close(); });

async function violations(query, act = async () => {}) {
  // the page's CSP allows no inline script: the test context injects axe with CSP bypassed
  const ctx = await h.browser.newContext({ bypassCSP: true });
  const page = await ctx.newPage();
  await page.goto(h.base + query);
  await waitForResult(page);
  await act(page);
  await page.addScriptTag({ content: AXE });
  const found = await page.evaluate(async () => (await globalThis.axe.run(document, { resultTypes: ["violations"] })).violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`));
  await ctx.close();
  return found;
}

test("axe-core finds no serious violations on a training answer with the GPU count, the sweep, a pin and the sliders", { skip: !AXE && "axe-core is not installed (npm install)" }, async () => {
  const found = await violations("?model=llama-3.1-8b&mode=full&gpu=a100-80gb", async (page) => {
    await page.click("#plan");
    await page.waitForSelector('[data-testid="plan-recommended"]');
    await page.click("#sweep-run");
    await page.waitForSelector("#sweep-rows", { state: "attached" });
    await page.click("#pin");                     // the compare chart and its table too
    await page.waitForSelector("#compare-chart canvas");
  });
  assert.deepEqual(found, []);
});

test("axe-core finds no serious violations on a serving answer", { skip: !AXE && "axe-core is not installed (npm install)" }, async () => {
  assert.deepEqual(await violations("?model=llama-3.1-8b&mode=serve&engine=vllm&gpu=a100-80gb"), []);
});
