"""What a pre-flight check adds to a run's start (budget: 100 ms): the CPU and wall time of
``pycore.integrations.transformers.preflight`` on a Llama-3.1-8B built on the meta device, with and
without a LoRA adapter, after the objects exist (the part the check adds; building the model is the
run's own start). Run it with the integration environment:

    .venv-int/bin/python scripts/bench_preflight.py [--repeat 5]

Prints the import of the integration (with the core it loads) and, per case, the first call and the
median of the rest. An installed package imports from compiled bytecode: where PYTHONDONTWRITEBYTECODE
is set (as on the project's machines), run it twice with the variable unset, so that the second run
measures what a user's run pays.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def timed(fn) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    from accelerate import init_empty_weights
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM, TrainingArguments

    cfg = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, max_position_embeddings=131072, rope_theta=500000.0)
    with init_empty_weights():
        full = LlamaForCausalLM(cfg)
        lora = get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=16, target_modules=["q_proj", "v_proj"]))
    out = tempfile.mkdtemp()
    cases = {
        "full, batch 1, seq 1024": (TrainingArguments(out, per_device_train_batch_size=1, bf16=True,
                                                      report_to=[], use_cpu=True), full),
        "LoRA, batch 1, seq 1024, checkpointing": (TrainingArguments(out, per_device_train_batch_size=1, bf16=True,
                                                                     gradient_checkpointing=True, report_to=[],
                                                                     use_cpu=True), lora),
    }
    import logging
    logging.disable(logging.WARNING)            # the full run does not fit: its warning is not the point here
    c, w = timed(lambda: __import__("pycore.integrations.transformers"))
    print(f"import pycore.integrations.transformers: {c * 1000:.0f} ms CPU / {w * 1000:.0f} ms wall")
    from pycore.integrations.transformers import preflight
    first = True
    for name, (args, model) in cases.items():
        runs = [timed(lambda: preflight(args, model, seq_len=1024, gpu="h100-sxm-80gb", on_risk="warn"))
                for _ in range(a.repeat + 1)]
        cpu, wall = runs[0]
        rest_cpu = statistics.median(r[0] for r in runs[1:])
        rest_wall = statistics.median(r[1] for r in runs[1:])
        print(f"preflight {name}: first call {cpu * 1000:.0f} ms CPU / {wall * 1000:.0f} ms wall"
              f"{' (loads the modules an estimate uses)' if first else ''}; then median {rest_cpu * 1000:.0f} ms CPU / "
              f"{rest_wall * 1000:.0f} ms wall")
        first = False
    return 0


if __name__ == "__main__":
    sys.exit(main())
