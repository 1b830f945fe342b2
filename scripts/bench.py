#!/usr/bin/env python3
"""Time the JSON API: estimates per second on a mix of requests (no solvers).

  python3 scripts/bench.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pycore.api import estimate  # noqa: E402

REQUESTS = [json.dumps(r) for r in [
    {"model": "llama-3.1-8b", "workload": {"mode": "lora", "batch_size": 4, "seq_len": 2048}},
    {"model": "llama-3.1-70b", "workload": {"mode": "full", "batch_size": 1, "seq_len": 4096, "gradient_checkpointing": True}},
    {"model": "qwen3-30b-a3b", "workload": {"mode": "inference", "batch_size": 32, "seq_len": 2048, "new_tokens": 256}},
    {"model": "gpt2", "workload": {"mode": "full", "batch_size": 8, "seq_len": 1024}, "precision": {"weights": "fp32", "autocast": "bf16"}},
    {"model": "deepseek-v3", "workload": {"mode": "inference", "batch_size": 1, "seq_len": 8192, "new_tokens": 512}, "precision": {"weights": "fp8"}},
]]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()
    for r in REQUESTS:                       # warm the catalog caches
        assert json.loads(estimate(r))["status"] == "ok"
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < a.seconds:
        for r in REQUESTS:
            estimate(r)
        n += len(REQUESTS)
    elapsed = time.perf_counter() - start
    print(f"python {sys.version.split()[0]}: {n} estimates in {elapsed:.2f} s")
    print(f"estimates_per_second={n / elapsed:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
