"""What one Llama decoder layer keeps for backward, eager and under torch.compile, against the core.

The layer (transformers' LlamaDecoderLayer, bf16, frozen weights as under an adapter, SDPA) runs on the
CPU with a bf16 input that requires grad; the tensors that autograd keeps after forward are summed
(weights, the input and the rotary tables left out). Compiled, it runs through AOTAutograd's
min-cut partitioner (backend aot_eager_decomp_partition, the partitioner Inductor uses; an Inductor run
on the CPU gave the same bytes). The core's layer model must give the same number of bytes in both
cases: eager, and with rule compile-recomputes-pointwise (pycore/training/kernels.py fused_layer).
What a GPU's kernels keep may still differ (the rule is unverified there).
"""

import weakref
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pycore.model.hfconfig import read_hf_config  # noqa: E402
from pycore.training.context import make_context  # noqa: E402
from pycore.training.kernels import fused_layer  # noqa: E402
from pycore.training.layers import layer_costs  # noqa: E402
from pycore.training.workload import Framework, Precision, Workload  # noqa: E402

CONFIG = dict(model_type="llama", hidden_size=256, intermediate_size=704, num_attention_heads=4,
              num_key_value_heads=2, num_hidden_layers=1, vocab_size=128)
B, S = 2, 128


def _kept(fn, layer, x, cos, sin) -> int:
    refs = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: refs.append(weakref.ref(t)) or t, lambda t: t):
        out = fn(x, position_embeddings=(cos, sin))
    assert (out[0] if isinstance(out, tuple) else out).requires_grad
    known = {t.untyped_storage().data_ptr() for t in [*layer.parameters(), x, cos, sin]}
    alive = {}
    for ref in refs:
        t = ref()
        if t is not None and t.untyped_storage().data_ptr() not in known:
            alive[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(alive.values())


@pytest.fixture(scope="module")
def measured():
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding
    cfg = transformers.LlamaConfig(**{k: v for k, v in CONFIG.items() if k != "model_type"})
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    layer = LlamaDecoderLayer(cfg, 0).to(torch.bfloat16)
    layer.requires_grad_(False)
    x = torch.randn(B, S, cfg.hidden_size, dtype=torch.bfloat16, requires_grad=True)
    cos, sin = LlamaRotaryEmbedding(cfg)(x, torch.arange(S).unsqueeze(0))
    eager = _kept(layer, layer, x, cos, sin)
    compiled = _kept(torch.compile(layer, backend="aot_eager_decomp_partition"), layer, x, cos, sin)
    return eager, compiled


def _core(compiled: bool):
    m = read_hf_config(CONFIG)
    ctx = make_context(m, Workload(mode="lora", batch_size=B, seq_len=S), Precision(weights="bf16"), Framework())
    ctx = replace(ctx, adapted=frozenset())          # frozen weights, no adapter
    lc = layer_costs(ctx, m)[0]
    if compiled:
        lc = fused_layer(lc, ctx, m)
    saved = dict(lc.saved)
    if compiled:
        # the input norm's input is the layer's input itself, which the measurement leaves out
        saved.pop("input norm input (own dtype)")
    return sum(saved.values())


def test_eager_layer_keeps_what_the_core_says(measured):
    # two fp32 norm inputs, gate, up and SiLU(gate) * up outputs, q and k after rotary, v, the output, lse
    assert measured[0] == _core(False)


def test_compiled_layer_keeps_what_the_compile_rule_says(measured):
    # the norms keep bf16 inputs and fp32 rstd, SiLU(gate) * up is recomputed: 2,004,992 -> 1,251,328 bytes
    assert measured[1] == _core(True)
    assert measured[1] < measured[0]
