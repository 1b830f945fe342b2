#!/usr/bin/env python3
"""Turn what shared/calibration/measure_hf.py writes into calibration records.

  python3 scripts/convert_measurements.py FLAT.jsonl OUT.jsonl [--gpu "NVIDIA H100 80GB HBM3"]
      [--measure ../shared/calibration/measure_hf.py]

measure_hf.py writes one flat object per case (its case fields, then n_params, peak_alloc_bytes,
context_bytes, ...). A calibration record (shared/calibration/README.md) nests them under
workload, measured and env, and carries the model's hf_config: it is taken from measure_hf.py's
MODELS table, read from the script itself. Cases whose status is "error" are skipped and listed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pycore.check.record import record_from_flat  # noqa: E402


def load_models(path: Path) -> dict:
    spec = importlib.util.spec_from_file_location("measure_hf", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)          # defines MODELS; the measuring runs only under __main__
    return module.MODELS


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("flat")
    p.add_argument("out")
    p.add_argument("--gpu", default="", help="the GPU's name as torch.cuda.get_device_name() gives it")
    p.add_argument("--measure", default=str(ROOT.parent / "shared" / "calibration" / "measure_hf.py"))
    a = p.parse_args(argv)
    models = load_models(Path(a.measure))
    written, skipped = 0, []
    with open(a.flat, encoding="utf-8") as src, open(a.out, "w", encoding="utf-8") as dst:
        for line in src:
            if not line.strip():
                continue
            flat = json.loads(line)
            if flat.get("status") not in ("ok", "oom"):
                skipped.append(flat.get("id", "?"))
                continue
            dst.write(json.dumps(record_from_flat(flat, models, a.gpu), sort_keys=True) + "\n")
            written += 1
    print(f"records={written} skipped={len(skipped)}" + (f" ({', '.join(skipped)})" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
