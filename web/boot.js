// Starts the estimator's worker as soon as the page starts, before app.js and its imports have loaded
// and the page has been parsed: Python's start-up is the long pole of the first answer (docs/faq.md,
// "Why is the first visit slower?"). app.js takes this worker, with the messages it posted meanwhile,
// through gmpTakeWorker(), and starts any later one (a restart) through gmpStartWorker().
"use strict";
(() => {
  // The build whose Python snapshot this browser stored (app.js writes it when the worker says so).
  // It goes to the worker in its name, so that a first visit does not open Cache Storage to look.
  const SNAPSHOT_HINT = "gmp-snapshot";
  const WORKER = new URL("worker.js", document.currentScript.src);
  function startWorker() {
    let hint = "";
    // "?": unknown (no storage, or storage that cannot keep the hint), so the worker looks
    try {
      hint = localStorage.getItem(SNAPSHOT_HINT) || "";
      if (!hint) localStorage.setItem(SNAPSHOT_HINT, "");
    } catch { hint = "?"; }
    const worker = new Worker(WORKER, { type: "module", name: `gmp-snapshot:${hint}` });
    if (globalThis.GMP_NO_SNAPSHOT) worker.postMessage({ kind: "config", snapshot: false });     // set by the tests
    return worker;
  }
  const startedAt = performance.now();
  let first = startWorker();
  const early = [];
  first.onmessage = (event) => early.push(event);
  globalThis.gmpStartWorker = startWorker;
  globalThis.gmpTakeWorker = () => {
    const taken = first && { worker: first, early, startedAt };
    first = null;
    return taken;
  };
  globalThis.gmpSnapshotHint = (build) => {
    try { if (build) localStorage.setItem(SNAPSHOT_HINT, build); else localStorage.removeItem(SNAPSHOT_HINT); } catch {}
  };
})();
