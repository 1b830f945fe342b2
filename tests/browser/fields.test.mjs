// One field table (issue 19 item 2): a field the schema declares with a URL parameter reaches the page's form,
// its link and its request with no edit to the page; the core, not the page, says whether its value is allowed.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { start, waitForResult } from "./harness.mjs";

let h;
before(async () => { h = await start(); });
after(async () => { await h?.close(); });

test("a parameter added to the schema gets a control, travels in the request, and the core's answer names it", async () => {
  const ctx = await h.browser.newContext();
  // the schema as the core would send it with one more field (the catalog's request part, as a new Field writes it)
  await ctx.route("**/catalog.json", async (route) => {
    const response = await route.fetch();
    const catalog = await response.json();
    catalog.request.fields["workload.warmup_steps"] = { type: "int", minimum: 0, maximum: 100, default: 3, doc: "steps before the peak" };
    catalog.request.url_params.warm = "workload.warmup_steps";
    await route.fulfill({ response, json: catalog });
  });
  const page = await ctx.newPage();
  const sent = [];
  await page.exposeFunction("gmpSent", (body) => sent.push(body));
  await page.addInitScript(() => {
    const post = Worker.prototype.postMessage;
    Worker.prototype.postMessage = function (msg, ...rest) { if (msg && typeof msg.request === "string") window.gmpSent(msg.request); return post.call(this, msg, ...rest); };
  });
  await page.goto(h.base + "?model=llama-3.2-1b&warm=7");
  await waitForResult(page);
  assert.equal(await page.locator('input[name="warm"]').count(), 1);           // the form has its control
  assert.ok(sent.some((b) => JSON.parse(b).workload?.warmup_steps === 7), sent.join("\n"));
  // the core running here does not know the field: its error names it, and the link's value falls back
  assert.match(await page.textContent("#messages"), /“warm” \(workload\.warmup_steps\)/);
  assert.equal(await page.inputValue('input[name="warm"]'), "3");
  await ctx.close();
});
