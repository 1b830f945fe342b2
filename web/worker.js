// Runs pycore in Pyodide off the main thread: the page posts requests, this posts responses.
//
// Start-up (docs/faq.md, "Why is the first visit slower?"):
// - the standard library the core and Pyodide's start-up use comes precompiled (pyodide/stdlib-core.zip,
//   built by scripts/build_runtime.mjs with this Pyodide); any other module is fetched with the rest of
//   the standard library (pyodide/stdlib-rest.zip) the first time an import misses;
// - after the first answer, when the page is idle, the worker saves a memory snapshot of Python with
//   pycore.api imported into Cache Storage, keyed by the build; later visits restore it instead of
//   initialising Python. The snapshot options (_makeSnapshot, _loadSnapshot, makeMemorySnapshot) are
//   private to Pyodide 314.0.7 and pinned by tests/pyodide/runtime.test.mjs; any failure falls back
//   to a normal start.
// Imported, not a static import, so that this module runs (and looks for its snapshot) without first
// waiting for pyodide.mjs to arrive.
const pyodideModule = import("./pyodide/pyodide.mjs");

const BUILD = "__VERSION__";                    // scripts/build.mjs writes the build's hash here
const BASE = new URL("./", import.meta.url).href;
const INDEX = BASE + "pyodide/";
const SNAPSHOT_CACHE = `gmp-snapshot-${BUILD}`;
const SNAPSHOT_KEY = `${BASE}pyodide/snapshot-${BUILD}.bin`;
// A snapshot is the whole wasm heap, about 30 MiB with pycore loaded; refuse to
// store anything far larger, which would mean the heap grew for another reason.
const SNAPSHOT_MAX_BYTES = 96 * 2 ** 20;
// The lock file lists packages the core does not use; an empty one with the right ABI skips its fetch.
const LOCK = { info: { abi_version: "2026_0" }, packages: {} };
// The core's zip (sourceless .pyc and its data files) is imported from where it is written, as the
// standard library is: writing one file costs less than unpacking 65.
const CORE_ZIP = "/lib/pycore.zip";
const installCore = (zip) => py.FS.writeFile(CORE_ZIP, new Uint8Array(zip));
// The snapshot waits for this long without a request: saving takes the worker about half a second.
const SNAPSHOT_IDLE_MS = 4000;

let api = null;
let py = null;
let snapshotState = "none";                    // none | restored | stored | failed: ... | skipped: ...
const progress = (text) => postMessage({ type: "progress", text });

// An import the precompiled core zip cannot serve fetches the rest of the standard library once,
// synchronously (XMLHttpRequest is synchronous-capable in workers), and retries.
const REST_FINDER = `
import sys, json, importlib.abc, importlib.machinery
CORE, REST = '/lib/python314.zip', '/lib/stdlib-rest.zip'
class _RestOfStdlib(importlib.abc.MetaPathFinder):
    """Imports the core zip cannot serve: a top-level module, or a submodule of a package whose used
    modules are in the core zip and whose other modules are in the rest zip, at the same path."""
    def __init__(self, names):
        self.names = frozenset(names)
    def find_spec(self, name, path=None, target=None):
        if name not in self.names:
            return None
        if path is None:
            search = [REST]
        else:
            search = [REST + p[len(CORE):] for p in path if isinstance(p, str) and p.startswith(CORE + '/')]
            if not search:
                return None
        if REST not in sys.path:
            from js import fetch_rest_stdlib
            fetch_rest_stdlib()
            sys.path.append(REST)
        return importlib.machinery.PathFinder.find_spec(name, search)
if not any(type(f).__name__ == '_RestOfStdlib' for f in sys.meta_path):
    sys.meta_path.append(_RestOfStdlib(json.loads(_rest_names)))
del _rest_names
`;

self.fetch_rest_stdlib = () => {
  const xhr = new XMLHttpRequest();
  xhr.open("GET", INDEX + "stdlib-rest.zip", false);
  xhr.overrideMimeType("text/plain; charset=x-user-defined");
  xhr.send();
  if (xhr.status !== 200) throw new Error(`stdlib-rest.zip: HTTP ${xhr.status}`);
  const text = xhr.responseText;
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i) & 0xff;
  py.FS.writeFile("/lib/stdlib-rest.zip", bytes);
};

// The stored snapshot's body as a promise, or null when this browser has none for this build:
// loadPyodide reads it while it imports pyodide.asm.mjs (it awaits the snapshot before it instantiates
// the wasm, whose memory size the snapshot sets), so the read and the script load overlap.
// The page names this worker "gmp-snapshot:BUILD" after this browser stored a snapshot of BUILD, and
// "gmp-snapshot:" before it has stored one: then there is nothing to look up (opening Cache Storage
// costs a first visit 50-100 ms). Any other name (no hint) looks.
const HINT = self.name.startsWith("gmp-snapshot:") ? self.name.slice("gmp-snapshot:".length) : "?";
const LOOKUP = "caches" in self && (HINT === "?" || HINT === BUILD);
async function findSnapshot() {
  if (!LOOKUP) return null;
  const hit = await (await caches.open(SNAPSHOT_CACHE)).match(SNAPSHOT_KEY);
  return hit ? { body: hit.arrayBuffer() } : null;
}

// Pyodide 314.0.7 swallows a failed WebAssembly instantiation (its getInstantiateWasmFunc catches the
// error, logs "wasm instantiation failed!" with console.warn and never calls back), so loadPyodide would
// wait forever. Chromium fails that fetch now and then (net::ERR_CACHE_WRITE_FAILURE when the page's
// preload and this fetch write the same cache entry). Watch for the warning and load again.
const WASM_FAILED = "wasm instantiation failed";
const LOAD_ATTEMPTS = 3;
async function loadRuntime(options) {
  for (let attempt = 1; ; attempt++) {
    const warn = console.warn;
    let fail;
    const failed = new Promise((_, reject) => { fail = reject; });
    console.warn = (...args) => {
      if (String(args[0]).includes(WASM_FAILED)) fail(new Error("the WebAssembly module did not load"));
      warn.apply(console, args);
    };
    try {
      const { loadPyodide } = await pyodideModule;
      return await Promise.race([loadPyodide(options), failed]);
    } catch (err) {
      if (attempt >= LOAD_ATTEMPTS || !String(err.message).includes("WebAssembly module")) throw err;
      progress(`Loading the Python runtime again (${err.message})…`);
    } finally {
      console.warn = warn;
    }
  }
}

async function startFresh(makeSnapshot, why) {
  progress(why);
  py = await loadRuntime({ indexURL: INDEX, stdLibURL: INDEX + "stdlib-core.zip", lockFileContents: LOCK,
    _makeSnapshot: makeSnapshot });
  mark("runtime started");
  installCore(await pycoreZip);
  progress("Loading the estimator…");
  py.runPython(`import sys; sys.path.insert(0, '${CORE_ZIP}'); import pycore.api`);
}

// In parallel with the runtime, but after it: Python's start-up needs the wasm and the library first.
const pycoreZip = fetch(BASE + "pycore.zip", { priority: "low" }).then((r) => r.arrayBuffer());
const restIndex = fetch(INDEX + "stdlib-rest-index.json").then((r) => r.text()).catch(() => "[]");
const timings = {};
const mark = (name) => { timings[name] = Math.round(performance.now()); };
// loadPyodide imports this module (by the same URL, so the import is shared) only after the snapshot
// lookup; starting it now overlaps its download and compilation with that lookup.
import(INDEX + "pyodide.asm.mjs").then(() => mark("runtime script loaded"), () => {});
const ready = (async () => {
  let snapshot = null;
  try { snapshot = await findSnapshot(); } catch { snapshot = null; }
  mark("snapshot found");
  let path = "fresh";
  if (snapshot) {
    try {
      progress("Restoring the estimator from this browser's snapshot…");
      py = await loadRuntime({ indexURL: INDEX, stdLibURL: INDEX + "stdlib-core.zip", lockFileContents: LOCK,
        _loadSnapshot: snapshot.body });
      mark("runtime restored");
      installCore(await pycoreZip);               // the file system is not in the snapshot (sys.path is)
      py.runPython("import random; random.seed()");                    // restored instances share the random state
      path = "snapshot";
      snapshotState = "restored";
    } catch (err) {
      path = "fallback";
      snapshotState = `failed: ${String(err).slice(0, 200)}`;
      await caches.delete(SNAPSHOT_CACHE).catch(() => {});
      await startFresh(false, `The saved snapshot did not restore (${String(err).slice(0, 120)}); starting Python normally…`);
    }
  } else {
    await startFresh("caches" in self, "Loading the Python runtime…");
  }
  py.globals.set("_rest_names", await restIndex);       // a string: Python keeps no JS object
  py.runPython(REST_FINDER);
  api = py.pyimport("pycore.api");
  mark("estimator ready");
  postMessage({ type: "ready", path, looked: LOOKUP, timings });
})().catch((err) => postMessage({ type: "failed",
  text: err instanceof Error ? `${err.name}: ${err.message}` : (() => { try { return JSON.stringify(err); } catch { return String(err); } })() }));

// After the first answers, when the page has been idle for a moment: save the snapshot.
let idleTimer = null;
let snapshotsAllowed = true;
function scheduleSnapshot() {
  if (!snapshotsAllowed || snapshotState !== "none" || !py || !("caches" in self)) return;
  clearTimeout(idleTimer);
  idleTimer = setTimeout(async () => {
    if (snapshotState !== "none") return;
    try {
      // Only a heap without live JS references can be saved; an import of the rest zip since start-up
      // would also tie the snapshot to a file the next start does not have.
      if (py.runPython("import sys; '/lib/stdlib-rest.zip' in sys.path")) { snapshotState = "skipped: rest of stdlib loaded"; return report(); }
      const bytes = py.makeMemorySnapshot();
      if (bytes.length > SNAPSHOT_MAX_BYTES) { snapshotState = `skipped: ${bytes.length} bytes`; return report(); }
      // Stored as it is: reading 30 MiB back is faster than inflating 5 MB, and Cache Storage is on disk.
      const cache = await caches.open(SNAPSHOT_CACHE);
      await cache.put(SNAPSHOT_KEY, new Response(bytes, { headers: { "content-type": "application/octet-stream" } }));
      for (const key of await caches.keys()) if (key.startsWith("gmp-snapshot-") && key !== SNAPSHOT_CACHE) await caches.delete(key);
      snapshotState = "stored";
    } catch (err) {
      snapshotState = `failed: ${String(err).slice(0, 200)}`;
    }
    report();
  }, SNAPSHOT_IDLE_MS);
}
function report() { postMessage({ type: "snapshot", state: snapshotState, build: BUILD }); }

const MODULE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,40}(\.[A-Za-z_][A-Za-z0-9_]{0,40}){0,4}$/;

onmessage = async (event) => {
  if (event.data && event.data.kind === "config") { snapshotsAllowed = event.data.snapshot !== false; return; }
  await ready;
  if (!api) return;
  const { id, request, kind } = event.data;
  if (kind === "import") {
    // Used by the tests and diagnostics: can this standard-library module be imported here?
    const name = String(request);
    let result = "invalid module name";
    if (MODULE_NAME.test(name)) {
      py.globals.set("_probe_name", name);
      result = py.runPython("import importlib\ntry:\n    _m = importlib.import_module(_probe_name); _r = 'ok ' + str(getattr(_m, '__file__', ''))\nexcept Exception as e:\n    _r = 'error ' + repr(e)\ndel _probe_name\n_r");
    }
    postMessage({ type: "result", id, response: JSON.stringify({ status: "ok", result }) });
    return;
  }
  postMessage({ type: "started", id });
  const t0 = performance.now();
  const answer = kind === "links" ? api.links(String(request))
    : kind === "from_config" ? api.from_config(String(request))
    : kind === "engine_log" ? api.engine_log(String(request)) : api.estimate(String(request));
  postMessage({ type: "result", id, response: answer, ms: performance.now() - t0 });
  scheduleSnapshot();
};
