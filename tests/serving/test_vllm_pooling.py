"""An encoder-only pooling model on vLLM (BERT with --runner pooling): no KV cache, no profile run, no
cache log lines, and the activation named after BERT's own MLP. Expected values are vLLM's source logic
worked by hand (0.19.0 and 0.34.0 sdists)."""

import re
import subprocess
import sys
from pathlib import Path

from pycore.data.catalog import catalog_model
from pycore.model.formats import NONE
from pycore.serving.config import Serving
from pycore.serving.vllm import estimate_vllm
from pycore.serving.vllm_budget import available_kv_bytes, engine_settings, stage_budget
from pycore.serving.vllm_profile import mlp_outputs
from pycore.training.workload import Hardware

ROOT = Path(__file__).resolve().parents[2]
GiB = 2 ** 30
H100 = Hardware("NVIDIA H100 80GB HBM3 (SXM)", 85017493504)
BERT = catalog_model("bert-base")            # 12 layers, hidden 768, intermediate 3072, gelu, 512 positions
CUDA_CONTEXT = int(0.8 * GiB)


def pooling(version: str) -> Serving:
    return Serving(engine="vllm", version=version, runner="pooling")


def test_without_a_kv_cache_034_turns_the_extensible_cache_off_and_keeps_the_default_utilization():
    # v1/executor/abstract.py:152-161 @0.34.0: "the model has no KV cache" disables the extensible cache;
    # config/cache.py:494-501: with it off, gpu_memory_utilization resolves to the default 0.92 (not 1.0)
    c = engine_settings(BERT, pooling("0.34.0"), H100)
    assert (c.no_kv, c.grows, c.util) == (True, False, 0.92)
    # 0.19.0: utilization 0.9, no extensible cache at all
    c = engine_settings(BERT, pooling("0.19.0"), H100)
    assert (c.no_kv, c.grows, c.util) == (True, False, 0.9)
    # the same model generating (not pooling) keeps a KV cache, and 0.34's extensible one
    assert engine_settings(BERT, Serving(engine="vllm", version="0.34.0"), H100).grows


def test_no_budget_is_computed_and_nothing_is_kept_free_for_a_cache():
    # v1/engine/core.py:235-250 @0.19.0: no KV cache spec -> determine_available_memory is never called and
    # every worker gets available memory 0; so no "profiled" figure and no extensible margin
    for version in ("0.19.0", "0.34.0"):
        s = pooling(version)
        c = engine_settings(BERT, s, H100)
        b = stage_budget(BERT, s, H100, NONE, c, (12,), 0)
        assert available_kv_bytes(s, c, b, int(H100.memory_bytes * c.util), H100.memory_bytes, CUDA_CONTEXT) == (0, {})


def test_the_activation_is_berts_mlp_intermediate_dense_and_gelu_without_a_gate():
    # bert.py BertIntermediate: dense (768 -> 3072) then GELU; BertOutput.dense (3072 -> 768). On 8,192 tokens
    # (vllm serve on an H100: max_num_batched_tokens 8192) in 16-bit:
    #   intermediate.dense output 8192 x 3072 x 2 = 50,331,648; GELU output the same;
    #   output.dense output 8192 x 768 x 2 = 12,582,912
    parts = mlp_outputs(BERT, 8192, 3072, 2)
    assert parts == {"intermediate.dense output": 50_331_648, "GELU output": 50_331_648,
                     "output.dense output": 12_582_912}
    # a gated decoder keeps its merged gate_up (2 x ffn): Llama-3.1-8B, 8192 x 2 x 14336 x 2 = 469,762,048
    llama = mlp_outputs(catalog_model("llama-3.1-8b"), 8192, 14336, 2)
    assert llama["gate_up output"] == 469_762_048 and "GELU output" not in llama


def test_berts_answer_has_no_pool_no_cache_lines_and_its_own_mlp():
    e = estimate_vllm(BERT, pooling("0.19.0"), H100, NONE, CUDA_CONTEXT)
    cats = {c.name: c for c in e.device.children}
    assert "KV cache" not in cats and "kept free by the extensible KV cache's sizing" not in cats
    assert e.kv_cache_bytes == 0 and e.starts
    for line in ("Available KV cache memory", "GPU KV cache size", "Maximum concurrency for 512 tokens per request"):
        assert line not in e.report
    act = cats["activation peak (warm-up; cached by the allocator)"]
    # hidden states and residual 2 x 8192 x 768 x 2 = 25,165,824; the MLP phase (50,331,648 x 2 + 12,582,912
    # = 113,246,208) outweighs attention's (QKV 8192 x 2304 x 2 + two 8192 x 768 x 2 = 62,914,560)
    assert {leaf.name: leaf.bytes for leaf in act.children} == {
        "hidden states and residual": 25_165_824, "MLP: intermediate.dense output": 50_331_648,
        "MLP: GELU output": 50_331_648, "MLP: output.dense output": 12_582_912}
    # BERT learns its positions: no rotary cos/sin cache among the weights
    assert "rotary cos/sin cache" not in {leaf.name for leaf in cats["weights"].children}


def test_the_serve_command_prints_berts_lines_and_no_kv_cache_memory():
    out = subprocess.run([sys.executable, "-m", "pycore", "serve", "--model", "bert-base", "--runner", "pooling",
                          "--version", "0.34.0"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "Available KV cache memory" not in text and "GPU KV cache size" not in text
    assert "gate_up" not in text and "kept free by the extensible KV cache" not in text
    # the MLP lines in GiB: 50,331,648 B = 0.05 GiB (x2), 12,582,912 B = 0.01 GiB
    assert "MLP: intermediate.dense output" in text and "MLP: GELU output" in text and "MLP: output.dense output" in text
    lines = {m.group(1): m.group(2) for m in re.finditer(r"^ *(\S.*?) {2,}([0-9.]+) GiB$", text, re.M)}
    assert lines["MLP: intermediate.dense output"] == "0.05" and lines["MLP: output.dense output"] == "0.01"
    assert "Model loading took:" in text
    # the summary says there is no cache rather than "0 tokens", and counts requests without a float's ".0"
    assert "KV cache: none" in text and "KV cache: 0 tokens" not in text and ".0 requests" not in text
    # a decoder still prints the cache's lines
    llama = subprocess.run([sys.executable, "-m", "pycore", "serve", "--model", "llama-3.1-8b", "--version", "0.19.0"],
                           cwd=ROOT, capture_output=True, text=True)
    assert "Available KV cache memory: " in llama.stdout and "GPU KV cache size: " in llama.stdout
    assert re.search(r"^KV cache: [0-9,]+ tokens; [0-9.,]+ requests of ", llama.stdout, re.M)
