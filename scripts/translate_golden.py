#!/usr/bin/env python3
"""Translate ../shared/golden/parallel.json into tests/data/golden_parallel.json: for each published
figure, the request that asks this tool the same question, the result field that answers it, the
figure in bytes, and its tolerance. Each check keeps the source case's id, source and notes.

  python3 scripts/translate_golden.py [../shared/golden/parallel.json] [tests/data/golden_parallel.json]

Tolerances: formula figures match to rounding, half a unit of the last printed digit (and at least
0.5%); measured peaks within 10%. A source case this tool cannot ask is kept with the reason.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GiB, MiB, GB = 2 ** 30, 2 ** 20, 10 ** 9
FORMULA_REL = 0.005
MEASURED_REL = 0.10


def exact(text, fallback: float) -> int:
    """'2851M printed (exact 2,851,598,336 ...)' -> 2851598336; a plain number -> itself."""
    if isinstance(text, (int, float)):
        return int(text)
    m = re.search(r"exact (?:unknown|([\d,]+))", text)
    if m and m.group(1):
        return int(m.group(1).replace(",", ""))
    m = re.search(r"([\d.]+)M printed", text)
    return int(float(m.group(1)) * 1e6) if m else int(fallback)


def digits_half(value: float) -> float:
    """Half a unit of the last printed digit of ``value`` (5.31 -> 0.005; 3291 -> 0.5)."""
    text = repr(value)
    decimals = len(text.split(".")[1]) if "." in text and not text.endswith(".0") else 0
    return 0.5 * 10 ** -decimals


def check(case, figure, request, measure, value, unit_bytes, rel=FORMULA_REL, abs_units=None, note=""):
    return {"id": f"{case['id']}:{figure}", "source": case["source"], "kind": case["kind"], "verbatim": case["verbatim"],
            "request": request, "measure": measure, "expected": {"value": value, "unit_bytes": unit_bytes},
            "expected_bytes": value * unit_bytes,
            "tolerance": {"rel": rel, "abs_bytes": (digits_half(value) if abs_units is None else abs_units) * unit_bytes},
            "notes": (note + " " + case.get("notes", "")).strip()}


def unsupported(case, why):
    return {"id": case["id"], "source": case["source"], "kind": case["kind"], "unsupported": why}


# ---- DeepSpeed's estimators -----------------------------------------------------------

def deepspeed(case):
    i, e = case["inputs"], case["expected"]
    P = exact(i["total_params"], 0)
    model = {"parameters": P}
    if "largest_layer_params" in i:
        model["largest_layer_parameters"] = exact(i["largest_layer_params"], 0)
        if "falcon" in case["id"]:
            model["largest_layer_parameters"] = 532_676_608          # 65024 x 8192, as the case assumes
            model["parameters"] = 41_303_000_000
    gpus = i.get("total_gpus") or i["num_gpus_per_node"] * i.get("num_nodes", 1)
    par = {"recipe": "deepspeed-estimator", "data_parallel": gpus, "zero_stage": i["zero_stage"],
           "gpus_per_node": i.get("num_gpus_per_node", gpus),
           "offload_optimizer": i.get("offload_optimizer", "none"), "offload_params": i.get("offload_param", "none"),
           "options": {"additional_buffer_factor": i.get("additional_buffer_factor", 1.5)}}
    if i["zero_stage"] == 2:
        par["options"]["version"] = "current" if "POSTFIX" in case["id"] else "before-pr5099"
    if "zero_init" in i:
        par["options"]["zero_init"] = bool(i["zero_init"])
    req = {"model": model, "parallelism": par}
    unit = MiB if "MiB" in e["unit"] else GiB
    out = [check(case, "per_gpu", req, "model_states_bytes", e["per_gpu"], unit,
                 abs_units=0.5 if unit == MiB else None)]
    if "per_cpu" in e:
        out.append(check(case, "per_cpu", req, "host_bytes", e["per_cpu"], unit))
    return out


# ---- the ZeRO paper --------------------------------------------------------------------

def zero_paper(case):
    i, e = case["inputs"], case["expected"]
    if case["id"].startswith("zero_table2"):
        return zero_table2(case)
    if case["id"].startswith("zero_sec6.1"):
        return [unsupported(case, "the 100B model's layers and hidden size are in an image table the source "
                                  "did not read; only the ratio is stated")]
    P = int(i["params"])
    stage = i.get("zero_stage", 0)
    req = {"model": {"parameters": P},
           "parallelism": {"recipe": "zero-paper", "data_parallel": i.get("Nd", 1), "zero_stage": stage}}
    value = e["per_device"]
    big = P >= 1e11                      # 128B and 1T cells are truncated to whole GB
    return [check(case, "per_device", req, "model_states_bytes", value, GB, abs_units=1.0 if big else None,
                  rel=FORMULA_REL if not big else 0.0)]


# Table 2's MP=1 row as printed; the other rows are MP times these cells (15.2 = 2 x 7.6), so they
# carry the row's rounding (7.64B printed as 7.6B). Cells printed with a decimal digit allow half of
# it, relative to the MP=1 cell.
TABLE2_MP1 = {"max_params_baseline": "2B", "max_params_Pos": "7.6B", "max_params_Pos+g": "14.4B",
              "max_params_Pos+g+p": "128B"}


def zero_table2(case):
    """The largest model a 32 GB V100 holds under each stage (theoretical columns; the measured
    columns include activations and are not formula figures)."""
    i, e = case["inputs"], case["expected"]
    out = []
    for stage, figure in enumerate(TABLE2_MP1):
        text = e[figure]
        scale = 1e12 if text.endswith("T") else 1e9
        value = float(text[:-1]) * scale
        mp1 = TABLE2_MP1[figure][:-1]
        rel = max(FORMULA_REL, 0.05 / float(mp1)) if "." in mp1 else FORMULA_REL
        req = {"model": {"parameters": 10 ** 9},
               "parallelism": {"recipe": "zero-paper", "data_parallel": i["Nd"], "tensor_parallel": i["MP"],
                               "zero_stage": stage},
               "gpu": {"memory_bytes": i["gpu_memory_GB"] * GB}, "framework": {"cuda_context_bytes": 0}, "solve": True}
        out.append(check(case, figure, req, "max_parameters", value, 1, abs_units=digits_half(float(text[:-1])) * scale,
                         rel=rel, note="the paper's theoretical column; rows are MP times the MP=1 row"))
    return out


def mtnlg(case):
    i, e = case["inputs"], case["expected"]
    if "activation" in case["id"]:
        req = {"model": {"parameters": 530_000_000_000, "n_layers": i["layers"], "hidden_size": i["hidden"]},
               "workload": {"batch_size": i["batch"], "seq_len": i["seq"]},
               "parallelism": {"recipe": "zero-paper", "recompute": "full"}}
        return [check(case, "aggregate", req, "report.activation_checkpoint_bytes", e["aggregate"], 10 ** 12,
                      note="the whole global batch on one rank's terms: batch x layers x seq x hidden x 2 bytes")]
    return [unsupported(case, "a bound ('over 10 TB'), and the 20-byte breakdown is in a figure the source did not read")]


# ---- Korthikanti et al. and Megatron's own estimate ----------------------------------

def _gpt(i) -> dict:
    """A GPT model of the paper (LayerNorm, 4h GeLU MLP, tied embeddings), as dimensions."""
    h = i["hidden"]
    return {"dimensions": {"n_layers": i["layers"], "hidden_size": h, "n_heads": i["heads"],
                           "vocab_size": i.get("vocab", 51200), "ffn_size": i.get("ffn", 4 * h) if isinstance(i.get("ffn"), int) else 4 * h,
                           "norm": "layernorm", "gated_mlp": False, "activation": "gelu", "tied_embeddings": True,
                           "max_positions": i.get("seq", 2048), "name": i.get("model", "GPT")}}


def korthikanti(case):
    i, e = case["inputs"], case["expected"]
    if "per_layer_bytes" not in e and "first_stage_bytes_eq6" not in e:
        return [unsupported(case, "a dimensionless ratio or a qualitative claim of the paper, not a memory figure")]
    if case["id"].endswith("embedding_output_dealloc"):
        return [unsupported(case, "the saving from deallocating pipeline outputs, not a figure of one layout")]
    par = {"recipe": "megatron", "tensor_parallel": i.get("tp", 1), "pipeline_parallel": i.get("pp", 1),
           "sequence_parallel": bool(i.get("sp")), "recompute": i.get("recompute", "none"),
           "options": {"activation_formula": "korthikanti"}}
    if i.get("interleave_m"):
        par["virtual_stages"] = i["interleave_m"]
    req = {"model": _gpt(i), "workload": {"batch_size": i["micro_batch"], "seq_len": i["seq"]}, "parallelism": par}
    if "per_layer_bytes" in e:
        return [check(case, "per_layer", req, "report.korthikanti_per_layer_bytes", e["per_layer_bytes"], 1)]
    return [check(case, "first_stage", req, "report.korthikanti_first_stage_bytes", e["first_stage_bytes_eq6"], 1),
            check(case, "extra", req, "report.korthikanti_extra_bytes", e["extra_embedding_output_terms_bytes"], 1)]


MEGATRON_MODELS = {
    "megatron_log_gpt2xl": {"hf_config": {"model_type": "gpt2", "n_embd": 1600, "n_layer": 48, "n_head": 25,
                                          "vocab_size": 50257, "n_positions": 1024}},
    "megatron_log_llama2-7b": {"hf_config": {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
                                             "num_attention_heads": 32, "intermediate_size": 11008, "vocab_size": 32000}},
    "megatron_log_llama2-3.5b": {"hf_config": {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 16,
                                               "num_attention_heads": 32, "intermediate_size": 11008, "vocab_size": 32000}},
    "megatron_log_gpt70b": {"dimensions": {"n_layers": 80, "hidden_size": 8192, "n_heads": 64, "vocab_size": 32000,
                                           "ffn_size": 32768, "norm": "layernorm", "gated_mlp": False,
                                           "activation": "gelu", "tied_embeddings": True}},
}
MEGATRON_VERSIONS = {"megatron_log_llama2-7b": "2024", "megatron_log_llama2-3.5b": "2024", "megatron_log_gpt70b": "2026-01",
                     "megatron_log_gpt2xl": "current"}


def megatron(case):
    i, e = case["inputs"], case["expected"]
    cid = case["id"]
    if cid.startswith("megatron_distopt_bytes"):
        weights = {"fp16_params": "fp16", "bf16_params": "bf16", "fp32_params": "fp32"}
        row = next(v for k, v in weights.items() if k in cid)
        model = {"model": "gpt2"}
        out = []
        for figure, dist, value in (("non_distributed", False, e["bytes_per_param_non_distributed"]),
                                    ("distributed_d8", True, None)):
            if value is None:
                kept, sharded = (float(x) for x in re.findall(r"[\d.]+", e["bytes_per_param_distributed"]))
                value = kept + sharded / 8
            req = {**model, "precision": {"weights": row}, "workload": {"seq_len": 1024},
                   "parallelism": {"recipe": "megatron", "data_parallel": 8,
                                   "options": {"distributed_optimizer": dist}}}
            out.append(check(case, figure, req, "report.bytes_per_parameter", value, 1,
                             note="d = 8 for the distributed row"))
        return out
    if cid.startswith("megatron_formula"):
        par = {"recipe": "megatron", "tensor_parallel": i["tp"], "pipeline_parallel": i["pp"],
               "virtual_stages": i["vpp"], "sequence_parallel": True, "recompute": "selective",
               "micro_batches": i["num_microbatches"], "data_parallel": i["dp"]}
        req = {"model": _gpt(i), "workload": {"batch_size": i["micro_batch"], "seq_len": i["seq"]}, "parallelism": par}
        return [check(case, "weight_and_optimizer", req, "report.weight_and_optimizer_bytes",
                      e["weight_and_optimizer_MB"], MiB),
                check(case, "activation", req, "report.activation_bytes", e["activation_MB"], MiB)]
    key = next(k for k in MEGATRON_MODELS if cid.startswith(k))
    par = {"recipe": "megatron", "tensor_parallel": i.get("tp", 1), "data_parallel": 1,
           "options": {"formula_version": MEGATRON_VERSIONS[key]}}
    pp = i.get("pp", 1)
    if isinstance(pp, str):
        pp = int(re.match(r"\d+", pp).group())
    par["pipeline_parallel"] = pp
    dp = i.get("dp", 1)
    if isinstance(dp, str):
        dp = int(re.match(r"\d+", dp).group())
    par["data_parallel"] = dp
    if i.get("use_distributed_optimizer") not in (None, False):
        par["options"]["distributed_optimizer"] = True
    seq, mb = i.get("seq", 2048), i.get("micro_batch", 1)
    if "seq_x_microbatch" in i:
        seq, mb = 8192, 1
        par["micro_batches"] = 8
    req = {"model": MEGATRON_MODELS[key], "workload": {"batch_size": mb, "seq_len": seq}, "parallelism": par}
    out = []
    if "weight_and_optimizer" in e:
        out.append(check(case, "weight_and_optimizer", req, "report.weight_and_optimizer_bytes",
                         e["weight_and_optimizer"], MiB))
    if "activation" in e:
        out.append(check(case, "activation", req, "report.activation_bytes", e["activation"], MiB))
    return out


# ---- the Ultra-Scale Playbook ------------------------------------------------------------

def playbook(case):
    i, e = case["inputs"], case["expected"]
    P = 70_600_000_000 if "70B" in i["model"] else 8_030_000_000     # the figures' own rounded counts
    par = {"recipe": "playbook", "tensor_parallel": i["tp"], "sequence_parallel": bool(i.get("sp"))}
    if i.get("cp"):
        par["context_parallel"] = i["cp"]
    req = {"model": {"parameters": P, "n_layers": i["layers"], "hidden_size": i["hidden"]},
           "workload": {"batch_size": i["micro_batch"], "seq_len": i["seq"]}, "parallelism": par}
    note = f"P = {P:,}: the count the figures imply (params GiB x 2^30 x tp / 2)."
    return [check(case, name, req, f"report.{field}", e[name], GiB, note=note)
            for name, field in (("params", "params_bytes"), ("grads", "grads_bytes"), ("optimizer", "optimizer_bytes"),
                                ("activations", "activations_bytes"))]


# ---- torchtitan's measured peaks -----------------------------------------------------------

TORCHTITAN_MODELS = {"Llama 3.1 8B": "llama-3.1-8b", "Llama 3.1 70B": "llama-3.1-70b", "Llama 3.1 405B": "llama-3.1-405b"}
TORCHTITAN_LAYERS = {"Llama 3.1 8B": 32, "Llama 3.1 70B": 80, "Llama 3.1 405B": 126}


def torchtitan_split(n_layers: int, stages: int) -> list[int]:
    """torchtitan's generate_split_points (parallelisms/pipelining_utils.py @9dec370, single-stage
    schedules): the first stage gets n // stages layers, middle stages one more while the
    remainder lasts, the last stage the rest."""
    base, extra = divmod(n_layers, stages)
    cuts, layer = [], 0
    for i in range(stages - 1):
        step = base if i == 0 or extra == 0 else base + 1
        if i and extra:
            extra -= 1
        layer += step
        cuts.append(layer)
    bounds = [0] + cuts + [n_layers]
    return [bounds[i + 1] - bounds[i] for i in range(stages)]
H100_96GB = {"memory_gib": 95.0, "name": "NVIDIA H100 96GB HBM2e"}


def torchtitan(case):
    i, e = case["inputs"], case["expected"]
    tp, pp, cp = i.get("tp", 1), i.get("pp", 1), i.get("cp", 1)
    dp = i["gpus"] // (tp * pp * cp)
    batch, micro = i["local_batch"], None
    if pp > 1:
        micro = pp                                    # torchtitan: pipeline_parallel_microbatches defaults to the degree
        batch = i["local_batch"] // micro
    recompute = "selective" if i["ac"].startswith("selective") else "full"
    par = {"recipe": "fsdp2", "data_parallel": dp, "tensor_parallel": tp, "pipeline_parallel": pp,
           "context_parallel": cp, "sequence_parallel": tp > 1, "recompute": recompute,
           # the measurements were taken at torchtitan 9dec370, version 0.0.2 (before PR #2259 stopped
           # repeating K/V to every query head, pycore/versions.py torchtitan-repeats-kv)
           "options": {"activation_checkpoint": "torchtitan-op", "torchtitan_version": "0.0.2"}}
    if micro:
        par["micro_batches"] = micro
        par["pipeline_layers"] = torchtitan_split(TORCHTITAN_LAYERS[i["model"]], pp)
    req = {"model": TORCHTITAN_MODELS[i["model"]], "workload": {"batch_size": batch, "seq_len": i["seq"]},
           "precision": {"weights": "fp32", "autocast": "bf16"}, "parallelism": par, "gpu": H100_96GB,
           "framework": {"cuda_context_bytes": 0}}
    note = ("torch.compile and float8 are not modelled." if i.get("compile") or i.get("float8") else "")
    return [check(case, "peak_reserved", req, "reserved_bytes", e["peak_reserved_per_gpu"], GiB, rel=MEASURED_REL,
                  abs_units=0.0, note=note)]


FAMILIES = [("ds_", deepspeed), ("hf_zero3", deepspeed), ("meso_", deepspeed), ("falcon", deepspeed),
            ("zero_", zero_paper), ("mtnlg", mtnlg), ("korthikanti", korthikanti), ("megatron", megatron),
            ("playbook", playbook), ("tt_", torchtitan)]


def translate(cases: list[dict]) -> list[dict]:
    out = []
    for case in cases:
        fn = next((f for prefix, f in FAMILIES if case["id"].startswith(prefix)), None)
        out += fn(case) if fn else [unsupported(case, "no translation")]
    return out


def main(argv) -> int:
    src = Path(argv[1]) if len(argv) > 1 else ROOT.parent / "shared" / "golden" / "parallel.json"
    dst = Path(argv[2]) if len(argv) > 2 else ROOT / "tests" / "data" / "golden_parallel.json"
    cases = json.loads(src.read_text(encoding="utf-8"))
    out = translate(cases)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps({"translated_from": "shared/golden/parallel.json", "source_cases": len(cases),
                               "checks": out}, indent=1) + "\n", encoding="utf-8")
    print(f"{len(cases)} source cases -> {sum('unsupported' not in c for c in out)} checks, "
          f"{sum('unsupported' in c for c in out)} unsupported; wrote {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
