// Time pycore's JSON API under Pyodide in Node, on the same request mix as scripts/bench.py:
//   node scripts/bench_pyodide.mjs
// Layout searches are timed twice: wall clock, and the Node process's CPU time (process.cpuUsage),
// which other work on a shared machine does not inflate.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pyodideWithCore, ROOT } from "../tests/pyodide/load.mjs";

const py = await pyodideWithCore();
py.FS.writeFile("/home/pyodide/bench.py", readFileSync(join(ROOT, "scripts", "bench.py")));
py.runPython(`
import time
from pycore.api import estimate
from bench import REQUESTS
for r in REQUESTS: estimate(r)
n = 0; t0 = time.perf_counter()
while time.perf_counter() - t0 < 3.0:
    for r in REQUESTS: estimate(r)
    n += len(REQUESTS)
RATE = n / (time.perf_counter() - t0)
from bench import time_plans
PLANS = "\\n".join(f"layout search, {label}: {count} layouts in {s:.3f} s" for label, count, s in time_plans())
from js import process
def _cpu():
    u = process.cpuUsage()
    return (u.user + u.system) / 1e6
PLANS += "\\n" + "\\n".join(f"layout search (CPU time), {label}: {count} layouts in {s:.3f} s"
                           for label, count, s in time_plans(clock=_cpu))
from bench import time_fits
PLANS += "\\n" + "\\n".join(f"fit search, {label}: {count} combinations in {1000 * s:.0f} ms" for label, count, s in time_fits())
`);
console.log(`pyodide ${py.version}: estimates_per_second=${Math.round(py.globals.get("RATE"))}`);
console.log(py.globals.get("PLANS"));
