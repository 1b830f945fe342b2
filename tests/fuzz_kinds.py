"""Requests of every kind the JSON entry point answers, drawn from the schema's own fields within its
limits: estimate, serve on each engine, plan, fit, sweep, check and links. Shared by
tests/test_fuzz_kinds.py (a fixed seed, a bounded count) and scripts/fuzz.py (a longer run).

Each field is set with some probability to a value at or inside its range (its minimum, its maximum,
a typical value, a random one), so that the searches meet their largest inputs: 1,024-layer models,
the longest contexts, the most GPUs.
"""

from __future__ import annotations

import gc
import json
import time

from hypothesis import strategies as st

from pycore.api import estimate, links, schema

FIELDS = json.loads(schema())["fields"]
KINDS = ("estimate", "serve-vllm", "serve-sglang", "serve-llamacpp", "serve-hf", "plan", "fit", "sweep", "check",
         "links")
# Catalog models from the smallest to the largest, dense, MoE, MLA, sliding-window and hybrid ones.
CATALOG = ("gpt2", "llama-3.2-1b", "qwen3-30b-a3b", "deepseek-v3", "gemma-2-9b", "gemma-3-27b", "llama-3.1-405b",
           "mixtral-8x22b", "qwen3-next-80b-a3b-instruct", "llama-4-maverick-17b-128e", "bert-base", "gpt-oss-120b",
           "kimi-k2-instruct", "starcoder2-3b")
MEASURED = ("max_memory_allocated: 21.3 GiB\nmax_memory_reserved: 22.9 GiB",
            "|  4100MiB / 81559MiB |", "torch.cuda.max_memory_allocated()\n12345678901",
            "|===========================================================================|\n"
            "|                  PyTorch CUDA memory summary, device ID 0                 |\n"
            "| Allocated memory      |  10.0 GiB  |  20.0 GiB  |  30.0 GiB  |  20.0 GiB  |")


def _int_values(f: dict):
    lo, hi = int(f["minimum"]), int(f["maximum"])
    typical = [v for v in (1, 2, 8, 64, 512, 4096, 32768) if lo <= v <= hi]
    return st.sampled_from([lo, hi, min(hi, lo + 1), *typical]) | st.integers(lo, hi)


# Adapter configs for mode peft: a few of PEFT's types with their usual settings.
PEFT_CONFIGS = ({"peft_type": "LORA", "r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "v_proj"]},
                {"peft_type": "LORA", "r": 8, "target_modules": "all-linear", "use_dora": True},
                {"peft_type": "IA3", "target_modules": ["k_proj", "v_proj", "down_proj"], "feedforward_modules": ["down_proj"]},
                {"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 20},
                {"peft_type": "LOHA", "r": 8, "target_modules": ["q_proj", "v_proj"]},
                {"peft_type": "ADALORA", "init_r": 12, "target_r": 8, "target_modules": ["q_proj", "v_proj"],
                 "total_step": 1000})
# Text fields: versions as each library writes them (and one that is not).
TEXT = {"framework.torch": ["2.7", "2.11", "1.10", "x"], "framework.transformers": ["4.56.0", "5.0.0", "4.16.0"],
        "framework.peft": ["0.17.0", "0.21.2"],
        "framework.alloc_conf": ["expandable_segments:True", "max_split_size_mb:128", "roundup_power2_divisions:4",
                                 "expandable_segments:False,garbage_collection_threshold:0.8"], "workload.version": ["", "0.19.0", "0.6.0", "0.5.4", "b6000", "latest"]}


def value_for(f: dict, path: str = ""):
    """A value of field ``f`` (at ``path``) within the schema's limits."""
    kind = f["type"]
    if kind == "int":
        return _int_values(f)
    if kind == "number":
        lo, hi = f["minimum"], f["maximum"]
        return st.sampled_from([lo, hi, (lo + hi) / 2]) | st.floats(lo, hi)
    if kind == "choice":
        return st.sampled_from(f["choices"])
    if kind == "bool":
        return st.booleans()
    if kind == "names":
        return st.sampled_from(["all-linear", ["q_proj", "v_proj"], ["o_proj"]])
    if kind == "ints":
        return st.lists(st.integers(int(f["minimum"]), 64), min_size=1, max_size=8)
    if kind == "object":
        return st.sampled_from(PEFT_CONFIGS)
    return st.sampled_from(TEXT.get(path, [""]))


def _set(req: dict, path: str, value) -> None:
    node = req
    parts = path.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


@st.composite
def models(draw):
    how = draw(st.sampled_from(["catalog", "catalog", "dims"]))
    if how == "catalog":
        return {"model": draw(st.sampled_from(CATALOG))}
    heads = draw(st.sampled_from([1, 8, 64]))
    return {"model": {"dimensions": {
        "n_layers": draw(st.sampled_from([1, 2, 126, 1024])), "hidden_size": heads * draw(st.sampled_from([64, 128])),
        "n_heads": heads, "vocab_size": draw(st.sampled_from([100, 32000, 262144])),
        **draw(st.sampled_from([{}, {"n_experts": 8, "experts_per_token": 2},
                                {"n_experts": 256, "experts_per_token": 8}]))}}}


def _fields_for(draw, req: dict, mode: str, engine: str | None, prefixes: tuple) -> None:
    for path, f in FIELDS.items():
        if not path.startswith(prefixes) or path in ("workload.mode", "workload.engine") or "[" in path:
            continue
        if f.get("modes") and mode not in f["modes"] or mode == "serve" and "serve" not in f.get("modes", ()):
            continue
        if f.get("engines") and engine not in f["engines"]:
            continue
        if draw(st.integers(0, 5)) == 0:
            _set(req, path, draw(value_for(f, path)))


@st.composite
def requests_of_every_kind(draw):
    """(kind, request): a request of one kind, its fields drawn from the schema within its limits."""
    kind = draw(st.sampled_from(KINDS))
    req = {"schema": 1, **draw(models())}
    if draw(st.booleans()):
        req["gpu"] = draw(st.sampled_from(["rtx-3090-24gb", "h100-sxm-80gb", "t4-16gb", "a100-80gb"]))
    if kind.startswith("serve-"):
        engine = kind.split("-", 1)[1]
        req["workload"] = {"mode": "serve", "engine": engine}
        _fields_for(draw, req, "serve", engine, ("workload.",))
        req["solve"] = draw(st.booleans())
        return kind, req
    mode = draw(st.sampled_from(["full", "lora", "qlora", "inference", "peft"] if kind != "plan" else ["full", "lora"]))
    req["workload"] = {"mode": mode}
    if mode == "peft":
        req["workload"]["peft_config"] = draw(st.sampled_from(PEFT_CONFIGS))
    prefixes = ("workload.", "precision.", "framework.")
    if kind in ("estimate", "plan", "check", "links") and mode != "inference":
        prefixes += ("parallelism.",)
    _fields_for(draw, req, mode, None, prefixes)
    if kind == "estimate":
        req["solve"] = draw(st.booleans())
    elif kind == "plan":
        req["plan"] = {}
        _fields_for(draw, req, mode, None, ("plan.",))
    elif kind == "fit":
        req["fit"] = {}
        _fields_for(draw, req, mode, None, ("fit.",))
    elif kind == "sweep":
        req["sweep"] = {"field": draw(st.sampled_from(FIELDS["sweep.field"]["choices"]))}
        _fields_for(draw, req, mode, None, ("sweep.",))
    elif kind == "check":
        req["measured"] = {"text": draw(st.sampled_from(MEASURED))}
    return kind, req


def answer(kind: str, req: dict) -> tuple[dict, float]:
    """The response and the CPU seconds it took (garbage collection paused: collecting the caches is
    not the request's work)."""
    text = json.dumps(req)
    gc.disable()
    try:
        t0 = time.process_time()
        out = (links if kind == "links" else estimate)(text)
        return json.loads(out), time.process_time() - t0
    finally:
        gc.enable()


def internal_errors(resp: dict) -> list:
    return [e for e in resp.get("errors", []) if "internal error" in e["message"] or not e.get("field")]


def warm() -> None:
    """Import what the core loads on a request's first use, so that no measured request pays for it."""
    for kind in KINDS:
        for model in ("gpt2", "llama-3.2-1b"):
            req = {"model": model, "workload": {"mode": "full"}}
            if kind.startswith("serve-"):
                req["workload"] = {"mode": "serve", "engine": kind.split("-", 1)[1]}
                req["solve"] = True
            elif kind in ("plan", "fit"):
                req[kind] = {}
            elif kind == "sweep":
                req["sweep"] = {"field": "batch_size"}
            elif kind == "check":
                req["measured"] = {"text": MEASURED[0]}
            answer(kind, req)
