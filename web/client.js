import { $, form, REQUEST_TIMEOUT_MS, text, showMessages, app } from "./dom.js";

let seq = 0;
const pending = new Map();
let worker = null;

// ---- the worker ------------------------------------------------------------------
export function registerServiceWorker() {
  // register() on an existing registration does not look for a new sw.js, and Chromium's check on
  // navigation is not reliable (seen in the deploy test): ask for one on every load, a conditional GET.
  if ("serviceWorker" in navigator && location.protocol !== "file:") {
    navigator.serviceWorker.register("sw.js").then((reg) => reg.update()).catch(() => {});
  }
}

let workerStartedAt = 0;
export const START_RETRIES = 2;
let startFailures = 0;
export function startWorker() {
  app.workerReady = false;
  // boot.js started the first worker with the page; a restart starts a new one the same way
  // (a page whose boot.js did not load, or an index.html older than this file, starts it here)
  const booted = globalThis.gmpTakeWorker?.();
  workerStartedAt = booted ? booted.startedAt : performance.now();
  worker = booted ? booted.worker
    : globalThis.gmpStartWorker?.() ?? new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  worker.onmessage = (event) => {
    const msg = event.data;
    if (msg.type === "progress") text($("#status"), msg.text);
    else if (msg.type === "failed") {
      // A start that fails (a fetch that broke off, a runtime that did not instantiate) gets a fresh worker,
      // twice; the files are in the browser's cache by then, so it costs a second or so.
      if (startFailures++ < START_RETRIES) {
        text($("#status"), `The estimator failed to load (${msg.text}); starting it again…`);
        worker.terminate();
        startWorker();
      } else text($("#status"), `The estimator failed to load: ${msg.text}`);
    }
    else if (msg.type === "ready") {
      app.workerReady = true;
      document.body.dataset.startPath = msg.path || "";          // fresh | snapshot | fallback
      document.body.dataset.startLookup = msg.looked ? "yes" : "no";  // did the worker look for a snapshot?
      document.body.dataset.startTimings = JSON.stringify({ workerStarted: Math.round(workerStartedAt), ...(msg.timings || {}) });
      text($("#status"), msg.path === "fallback" ? "The saved snapshot did not restore; started Python normally." : "");
      if (msg.path === "fallback") globalThis.gmpSnapshotHint?.(null);
      if (app.formReady) app.update();                                    // otherwise the first update runs once the form is built
      registerServiceWorker();
    } else if (msg.type === "snapshot") {
      document.body.dataset.snapshot = msg.state;
      if (msg.state === "stored") globalThis.gmpSnapshotHint?.(msg.build);
    }
    else if (msg.type === "started") {
      // The watchdog times the worker's work on this request, not the time it waited behind others.
      const p = pending.get(msg.id);
      if (p) { clearTimeout(p.timer); p.timer = setTimeout(() => restartWorker(msg.id), p.timeout); }
    } else if (msg.type === "result") {
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (p) { clearTimeout(p.timer); p.resolve({ id: msg.id, response: JSON.parse(msg.response) }); }
    }
  };
  // replayed in order; a replayed failure that restarts the worker ends the replay
  if (booted) for (const event of booted.early) { if (worker !== booted.worker) break; worker.onmessage(event); }
}

// What a request is, in the words of the message that says it timed out.
export function describeRequest(kind, request) {
  const other = { links: "Writing the command and the link", from_config: "Reading the training config",
    engine_log: "The comparison with the engine's log" };
  if (kind !== "estimate") return other[kind] || "A diagnostic request";
  if (request.plan) return "The search for the fewest GPUs";
  if (request.sweep) return "The sweep";
  if (request.measured) return "The comparison with your measurement";
  if (request.fit || request.solve) return "The search for what fits (largest batch, longest sequence and fixes)";
  return "The estimate";
}
// Requests that ran past their watchdog, by kind and text: they are never sent again (sending the same
// request would time out again, and a page that replays it after each restart never settles). ask()
// answers them at once with status "timeout".
export const timedOut = new Set();
// The watchdog fired on request `culprit`: abandon every request in flight and start a new worker. The
// user's configuration stays as it is (the form is not reset); the request that timed out is named, and
// the new worker answers the current configuration without it.
export function restartWorker(culprit) {
  worker.terminate();
  const c = pending.get(culprit);
  if (c) timedOut.add(c.key);
  for (const [id, p] of pending) { clearTimeout(p.timer); p.resolve({ id, response: { status: "timeout", culprit: id === culprit } }); }
  pending.clear();
  const what = c ? c.what : "A request";
  showMessages([`${what} took more than ${(c ? c.timeout : REQUEST_TIMEOUT_MS) / 1000} s on this configuration and was stopped; `
    + "it will not be run again for this configuration. Change a setting to continue."]);
  startWorker();
}

// A request waits in the worker's queue behind the ones before it; each of those has its own watchdog,
// so the queue itself gets a generous limit (a worker that never answers is still restarted).
export const QUEUE_TIMEOUT_MS = 60000;
export function ask(request, timeout = REQUEST_TIMEOUT_MS, kind = "estimate") {
  return new Promise((resolve) => {
    const id = ++seq;
    const body = kind === "estimate" || kind === "links" ? JSON.stringify(request) : request;
    const key = `${kind} ${body}`;
    if (timedOut.has(key)) { resolve({ id, response: { status: "timeout", repeated: true } }); return; }
    const timer = setTimeout(() => restartWorker(id), QUEUE_TIMEOUT_MS + timeout);
    pending.set(id, { resolve, timer, timeout, key, what: describeRequest(kind, request) });
    worker.postMessage({ id, kind, request: body });
  });
}
// Diagnostics (used by the tests): does a standard-library module import in the worker?
globalThis.gmpImportCheck = async (name) => (await ask(String(name), 30000, "import")).response.result;
