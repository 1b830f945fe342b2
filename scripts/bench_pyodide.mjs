// Time pycore's JSON API under Pyodide in Node: node scripts/bench_pyodide.mjs
import { pyodideWithCore } from "../tests/pyodide/load.mjs";

const py = await pyodideWithCore();
py.runPython(`
import json, time
from pycore.api import estimate
REQ = [json.dumps(r) for r in [
    {"model": "llama-3.1-8b", "workload": {"mode": "lora", "batch_size": 4, "seq_len": 2048}},
    {"model": "llama-3.1-70b", "workload": {"mode": "full", "batch_size": 1, "seq_len": 4096, "gradient_checkpointing": True}},
    {"model": "qwen3-30b-a3b", "workload": {"mode": "inference", "batch_size": 32, "seq_len": 2048, "new_tokens": 256}},
    {"model": "gpt2", "workload": {"mode": "full", "batch_size": 8, "seq_len": 1024}, "precision": {"weights": "fp32", "autocast": "bf16"}},
    {"model": "deepseek-v3", "workload": {"mode": "inference", "batch_size": 1, "seq_len": 8192, "new_tokens": 512}, "precision": {"weights": "fp8"}},
]]
for r in REQ: estimate(r)
n = 0; t0 = time.perf_counter()
while time.perf_counter() - t0 < 3.0:
    for r in REQ: estimate(r)
    n += len(REQ)
RATE = n / (time.perf_counter() - t0)
`);
const rate = py.globals.get("RATE");
console.log(`pyodide ${py.version}: estimates_per_second=${Math.round(rate)}`);
