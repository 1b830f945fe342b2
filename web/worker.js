// Runs pycore in Pyodide off the main thread: the page posts requests, this posts responses.
import { loadPyodide } from "./pyodide/pyodide.mjs";

let api = null;
const ready = (async () => {
  postMessage({ type: "progress", text: "Loading the Python runtime (first visit only)…" });
  const py = await loadPyodide({ indexURL: new URL("./pyodide/", import.meta.url).href });
  postMessage({ type: "progress", text: "Loading the estimator…" });
  const zip = await (await fetch(new URL("./pycore.zip", import.meta.url))).arrayBuffer();
  py.unpackArchive(zip, "zip", { extractDir: "/home/pyodide/lib" });
  py.runPython("import sys; sys.path.insert(0, '/home/pyodide/lib'); import pycore.api");
  api = py.pyimport("pycore.api");
  postMessage({ type: "ready" });
})().catch((err) => postMessage({ type: "failed", text: String(err) }));

onmessage = async (event) => {
  await ready;
  if (!api) return;
  const { id, request } = event.data;          // the request as JSON text; the core parses it, bounded
  const t0 = performance.now();
  postMessage({ type: "result", id, response: api.estimate(String(request)), ms: performance.now() - t0 });
};
