"""What autograd keeps of the attention output, the output projection's input (issue 22), against the core.

Real decoder layers of transformers 5.25 (random weights from tiny configs), with peft 0.21.2 LoRA adapters
(fp32, peft's default) or every weight trainable, run one forward on the CPU under
torch.autograd.graph.saved_tensors_hooks with an input that requires grad; the tensors still alive after
it are summed, storages counted once, parameters, buffers, the input and the rotary tables left out (as
tests/integration/test_compile_saved.py does).

1. The output projection, for Llama, GPT-2 (Conv1D c_proj), BERT (attention.output.dense), GPT-NeoX
   (dense), Phi-3 and GLM-4-MoE (whose rotary joins q with torch.cat, as NeoX's), eager and SDPA (and
   SDPA's math path for Llama), bf16 and fp32, with the projection frozen and not adapted, adapted, or
   trained: what is still kept after forward of the projection's input (by the flash kernel, by the base
   weight, or by lora_A as itself) and of the kernel's output where it is a separate tensor, and what
   lora_A keeps besides (its cast to fp32), must match the core's attention_output terms to the byte.
   The rank-wide lora_A output that lora_B keeps is not modelled and is left out here.
2. Whole layers of shapes and target sets not used while the rules were fixed (a Qwen2 shape with one
   key/value head and biases on q, k, v; a Mistral shape; GPT-2, BERT and GPT-NeoX layers of other widths
   and heads than while developing; Qwen3 and OLMo 2 with q/k norms; Qwen3-Next's gated attention;
   DeepSeek-V2/V3 MLA under eager attention), against the core's layer_costs: the sum must match to the byte, plus
   the rank-wide lora_A outputs (r x tokens x 4 bytes per adapted linear), after taking out what the CPU
   keeps differently from CUDA (_as_the_cpu_keeps): dropout at p = 0 is a no-op on the CPU (ATen
   Dropout.cpp), so eager attention keeps no mask and, where no cast follows the softmax, no separate
   probabilities; the CPU's layer_norm keeps bf16 statistics; GPT-2's K, V copies are CUDA's; and the
   norms that keep the layer's input itself, which the measurement leaves out.
3. A checkpointed layer's recompute in backward (use_reentrant=True) keeps what the core's layer keeps.
4. Qwen3-Next's gated delta rule: what is kept of out_proj's input (frozen, adapted, trained).
"""

import warnings
import weakref
from dataclasses import replace

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from pycore.model.hfconfig import read_hf_config  # noqa: E402
from pycore.model.spec import attn_out_dim  # noqa: E402
from pycore.training.activations import Parts, attention_output  # noqa: E402
from pycore.training.context import make_context  # noqa: E402
from pycore.training.layers import layer_costs  # noqa: E402
from pycore.training.workload import Framework, Precision, Workload  # noqa: E402

B, S, R = 2, 24, 4
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
FAMILIES = {   # config, the layer list, the output projection's path in a layer, its target name for peft
    "llama": (dict(model_type="llama", hidden_size=72, intermediate_size=104, num_attention_heads=6,
                   num_key_value_heads=2, num_hidden_layers=1, vocab_size=64),
              "model.layers", "self_attn.o_proj", "o_proj", ["q_proj", "v_proj"]),
    "gpt2": (dict(model_type="gpt2", n_embd=72, n_head=6, n_layer=1, n_inner=104, vocab_size=64, bos_token_id=0,
                  eos_token_id=0, attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0),
             "transformer.h", "attn.c_proj", "attn.c_proj", ["c_attn"]),
    "bert": (dict(model_type="bert", hidden_size=72, num_attention_heads=6, num_hidden_layers=1, intermediate_size=104,
                  vocab_size=64, attention_probs_dropout_prob=0.0, hidden_dropout_prob=0.0),
             "bert.encoder.layer", "attention.output.dense", "attention.output.dense", ["query", "value"]),
    "neox": (dict(model_type="gpt_neox", hidden_size=72, num_attention_heads=6, num_hidden_layers=1,
                  intermediate_size=104, vocab_size=64, rotary_pct=0.5, attention_dropout=0.0, hidden_dropout=0.0),
             "gpt_neox.layers", "attention.dense", "dense", ["query_key_value"]),
    "phi3": (dict(model_type="phi3", hidden_size=72, intermediate_size=104, num_attention_heads=6, num_key_value_heads=2,
                  num_hidden_layers=1, vocab_size=64, partial_rotary_factor=0.5, pad_token_id=0),
             "model.layers", "self_attn.o_proj", "o_proj", ["qkv_proj"]),
    "glm4_moe": (dict(model_type="glm4_moe", hidden_size=72, intermediate_size=104, moe_intermediate_size=32,
                      num_attention_heads=6, num_key_value_heads=2, head_dim=12, num_hidden_layers=1, vocab_size=64,
                      first_k_dense_replace=1, n_routed_experts=4, num_experts_per_tok=2, partial_rotary_factor=0.5),
                 "model.layers", "self_attn.o_proj", "o_proj", ["q_proj", "v_proj"]),
}


def _model(cfg: dict, attention: str, dtype):
    conf = transformers.AutoConfig.for_model(**cfg)
    conf._attn_implementation = attention
    torch.manual_seed(0)
    if cfg["model_type"] == "bert":
        return transformers.BertForMaskedLM(conf).to(dtype)
    return transformers.AutoModelForCausalLM.from_config(conf).to(dtype)


def _adapted(model, targets):
    if targets is None:                 # full training: every weight trains
        return model.train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return peft.get_peft_model(model, peft.LoraConfig(r=R, target_modules=targets, lora_dropout=0.0)).train()


def _get(obj, path: str):
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


def _run_layer(model, layers: str, inside_path: str | None = None):
    """Forward of the first layer; returns {storage: (bytes, shape, saved inside the module at inside_path)}
    of what autograd still keeps, and the storages of that module's input and of the SDPA kernel's output."""
    base = model.base_model.model if hasattr(model, "peft_config") else model
    layer = _get(base, layers)[0]
    x = torch.randn(B, S, base.config.hidden_size, dtype=next(layer.parameters()).dtype, requires_grad=True)
    kw, extra = {}, []
    rotary = next((mod for name, mod in base.named_modules() if name.endswith("rotary_emb")), None)
    if rotary is not None:
        pe = rotary(x, torch.arange(S).unsqueeze(0))       # (cos, sin), or DeepSeek-V2's complex frequencies
        kw["position_embeddings"], extra = pe, list(pe) if isinstance(pe, tuple) else [pe]
    state = {"inside": False, "input": None}
    hooks = []
    if inside_path:
        mod = _get(layer, inside_path)
        hooks.append(mod.register_forward_pre_hook(lambda _m, a: state.update(inside=True, input=a[0])))
        hooks.append(mod.register_forward_hook(lambda *_: state.update(inside=False)))
    packed, kernel = [], torch.nn.functional.scaled_dot_product_attention

    def sdpa(*args, **kwargs):          # the kernel's output, kept by the flash kernel
        out = kernel(*args, **kwargs)
        state["kernel"] = out
        return out
    torch.nn.functional.scaled_dot_product_attention = sdpa
    try:
        with torch.autograd.graph.saved_tensors_hooks(lambda t: packed.append((weakref.ref(t), state["inside"])) or t,
                                                      lambda t: t):
            out = layer(x, **kw)
    finally:
        torch.nn.functional.scaled_dot_product_attention = kernel
    for h in hooks:
        h.remove()
    assert (out[0] if isinstance(out, tuple) else out).requires_grad
    known = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers(), x, *extra]}
    alive = {}
    for ref, inside in packed:
        t = ref()
        if t is not None and t.untyped_storage().data_ptr() not in known:
            ptr = t.untyped_storage().data_ptr()
            prev = alive.get(ptr, (0, (), False))
            alive[ptr] = (t.untyped_storage().nbytes(), tuple(t.shape), inside or prev[2])
    ptrs = {state[k].untyped_storage().data_ptr() for k in ("input", "kernel") if state.get(k) is not None}
    return alive, ptrs


def _context(cfg: dict, targets, weights: str, kernel: str):
    m = read_hf_config(cfg)
    mode = "full" if targets is None else "lora"
    w = Workload(mode=mode, batch_size=B, seq_len=S, attention="eager" if kernel == "eager" else "sdpa",
                 lora_targets=None if targets is None else ["nothing"])
    return m, replace(make_context(m, w, Precision(weights=weights), Framework()), kernel=kernel)


@pytest.mark.parametrize("state", ["frozen", "adapted", "full"])
@pytest.mark.parametrize("weights", ["bf16", "fp32"])
@pytest.mark.parametrize("attention", ["eager", "sdpa", "math"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_what_is_kept_of_the_output_projections_input_matches_autograd(family, attention, weights, state):
    if attention == "math" and family != "llama":
        pytest.skip("the math path is checked on Llama")
    cfg, layers, path, target, others = FAMILIES[family]
    targets = None if state == "full" else others + ([target] if state == "adapted" else [])
    from torch.nn.attention import SDPBackend, sdpa_kernel
    backends = [SDPBackend.MATH] if attention == "math" else [SDPBackend.MATH, SDPBackend.FLASH_ATTENTION]
    with sdpa_kernel(backends):
        model = _adapted(_model(cfg, "eager" if attention == "eager" else "sdpa", DTYPES[weights]), targets)
        alive, outputs = _run_layer(model, layers, path)
    kept = sum(alive[ptr][0] for ptr in outputs if ptr in alive)
    casts = sum(n for ptr, (n, shape, inside) in alive.items() if inside and ptr not in outputs and shape[-1] != R)

    kernel = {"eager": "eager", "math": "math", "sdpa": "flash"}[attention]
    m, ctx = _context(cfg, targets, weights, kernel)
    ctx = replace(ctx, adapted=frozenset({path.rsplit(".", 1)[-1]}) if state == "adapted" else frozenset())
    acc = Parts.of(ctx)
    attention_output(ctx, acc, m, ctx.tokens * attn_out_dim(m))
    modelled = sum(acc.items.pop(k, 0) for k in ("attention output", "attention output (the output projection's input)"))
    assert (kept, casts) == (modelled, sum(acc.items.values()))
    if state == "frozen" and attention != "sdpa":
        assert kept == 0                        # nothing keeps a frozen, unadapted projection's input
    else:
        assert kept or casts


QWEN3_NEXT = dict(model_type="qwen3_next", hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
                  shared_expert_intermediate_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                  num_hidden_layers=4, vocab_size=64, num_experts=4, num_experts_per_tok=2, linear_num_value_heads=4,
                  linear_num_key_heads=2, linear_key_head_dim=8, linear_value_head_dim=12, linear_conv_kernel_dim=4,
                  full_attention_interval=4, mlp_only_layers=[0, 1, 2, 3])


# Shapes and targets not used while the rules were fixed (the GPT-2, BERT and GPT-NeoX layers are FAMILIES' shapes).
LAYERS = {
    "qwen2-k-o": (dict(model_type="qwen2", hidden_size=80, intermediate_size=136, num_attention_heads=5,
                       num_key_value_heads=1, num_hidden_layers=1, vocab_size=64), "model.layers", ["k_proj", "o_proj"]),
    "mistral-v-up": (dict(model_type="mistral", hidden_size=64, intermediate_size=120, num_attention_heads=8,
                          num_key_value_heads=4, head_dim=12, num_hidden_layers=1, vocab_size=64),
                     "model.layers", ["v_proj", "up_proj"]),
    "gpt2-all": (FAMILIES["gpt2"][0], "transformer.h", "all-linear"),
    "bert-all": (FAMILIES["bert"][0], "bert.encoder.layer", "all-linear"),
    "neox-qkv-dense": (FAMILIES["neox"][0], "gpt_neox.layers", ["query_key_value", "dense"]),
    "qwen3-q-o": (dict(model_type="qwen3", hidden_size=80, intermediate_size=136, num_attention_heads=5,
                       num_key_value_heads=1, head_dim=16, num_hidden_layers=1, vocab_size=64), "model.layers",
                  ["q_proj", "o_proj"]),
    "olmo2-q-v": (dict(model_type="olmo2", hidden_size=80, intermediate_size=136, num_attention_heads=5,
                       num_key_value_heads=5, num_hidden_layers=1, vocab_size=64), "model.layers", ["q_proj", "v_proj"]),
    "deepseek_v3-mla": (dict(model_type="deepseek_v3", hidden_size=72, intermediate_size=112, moe_intermediate_size=32,
                             num_attention_heads=6, num_key_value_heads=6, num_hidden_layers=1, first_k_dense_replace=1,
                             vocab_size=64, q_lora_rank=20, kv_lora_rank=24, qk_nope_head_dim=8, qk_rope_head_dim=4,
                             v_head_dim=14, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1),
                        "model.layers", ["q_a_proj", "kv_b_proj", "o_proj"]),
    "deepseek_v2-mla": (dict(model_type="deepseek_v2", hidden_size=64, intermediate_size=96, moe_intermediate_size=32,
                             num_attention_heads=4, num_key_value_heads=4, num_hidden_layers=1, first_k_dense_replace=1,
                             vocab_size=64, q_lora_rank=None, kv_lora_rank=16, qk_nope_head_dim=12, qk_rope_head_dim=8,
                             v_head_dim=12, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1),
                        "model.layers", ["q_proj", "kv_a_proj_with_mqa"]),
    "qwen3_next-gated-attention": (dict(QWEN3_NEXT, full_attention_interval=1, num_hidden_layers=1), "model.layers",
                                   ["q_proj", "v_proj"]),
}
# Qwen3-Next's norms multiply by (1 + weight) in fp32, a vector per norm kept by the product: not modelled
UNMODELLED = {"qwen3_next": lambda cfg: 4 * (2 * cfg["hidden_size"] + 2 * cfg["head_dim"])}


def _as_the_cpu_keeps(saved: dict, model_type: str, weights: str) -> dict:
    """The core's parts less what the CPU keeps differently from CUDA, and less the layer's input itself."""
    saved = dict(saved)
    gone = ["attention scores: dropout mask",                   # dropout at p = 0 is a no-op on the CPU
            "attention K, V contiguous copies",                 # GPT-2 under CUDA's SDPA kernels only
            "ln_1 input", "input norm input", "layer input (read by q, k, v)"]   # the layer's input itself
    if weights == "fp32" or model_type in ("gpt2", "bert"):
        gone.append("attention scores: probabilities")          # with no dropout, the softmax output itself
    if weights == "fp32":
        gone.append("input norm fp32 input")                    # x.to(float32) is x
    if model_type == "gpt_neox":
        gone.append("post-attention norm input")                # the parallel residual's MLP norm reads x
    for name in gone:
        saved.pop(name, None)
    if weights == "bf16" and model_type in ("gpt2", "bert", "gpt_neox"):
        # the CPU's layer_norm keeps bf16 mean and rstd, CUDA's fp32 (layer_norm_kernel.cu: acc_type)
        saved = {k: v // 2 if k.endswith("statistics") else v for k, v in saved.items()}
    return saved


@pytest.mark.parametrize("weights", ["bf16", "fp32"])
@pytest.mark.parametrize("attention", ["eager", "sdpa"])
@pytest.mark.parametrize("case", sorted(LAYERS))
def test_a_whole_layer_keeps_what_the_core_says(case, attention, weights):
    cfg, layers, targets = LAYERS[case]
    if case.endswith("mla") and attention == "sdpa":
        pytest.skip("MLA's q/k and v head sizes differ: the CPU runs SDPA's math path, CUDA another kernel")
    m = read_hf_config(cfg)
    w = Workload(mode="lora", batch_size=B, seq_len=S, attention=attention, lora_targets=targets)
    ctx = make_context(m, w, Precision(weights=weights), Framework())
    if ctx.kernel == "efficient":
        ctx = replace(ctx, kernel="flash")      # the CPU has no memory-efficient kernel; its flash kernel takes fp32
    from torch.nn.attention import SDPBackend, sdpa_kernel
    backends = [SDPBackend.MATH] if ctx.kernel == "math" else [SDPBackend.MATH, SDPBackend.FLASH_ATTENTION]
    model = _adapted(_model(cfg, attention, DTYPES[weights]), targets)
    with sdpa_kernel(backends):
        alive, _ = _run_layer(model, layers)
    measured = sum(n for n, _, _ in alive.values())
    saved = _as_the_cpu_keeps(layer_costs(ctx, m)[0].saved, m.model_type, weights)
    adapted = sum(isinstance(mod, peft.tuners.lora.LoraLayer) for mod in _get(model.base_model.model, layers)[0].modules())
    rank_outputs = R * ctx.tokens * 4 * adapted             # lora_A's output, kept by lora_B: not modelled
    unmodelled = UNMODELLED.get(m.model_type, lambda _: 0)(cfg)
    assert measured == sum(saved.values()) + rank_outputs + unmodelled, (measured, saved)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_a_checkpointed_layer_keeps_the_same_when_backward_recomputes_it(attention):
    # Under gradient checkpointing a layer's forward runs again in backward; the core keeps the same
    # LayerCost.saved for it then (timeline.training_snapshots). With use_reentrant=True the recompute is an
    # ordinary forward, whose saved tensors the hooks see: the same bytes as what the core says for the layer
    # without checkpointing (LoRA on q_proj and v_proj: a frozen o_proj, the case of issue 22).
    import torch.utils.checkpoint as checkpoint
    cfg, layers, _ = LAYERS["qwen2-k-o"]
    targets = ["q_proj", "v_proj"]
    model = _adapted(_model(cfg, attention, torch.bfloat16), targets)
    base = model.base_model.model
    layer = _get(base, layers)[0]
    x = torch.randn(B, S, cfg["hidden_size"], dtype=torch.bfloat16, requires_grad=True)
    cos, sin = base.model.rotary_emb(x, torch.arange(S).unsqueeze(0))
    known = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers(), x, cos, sin]}
    packed = {}

    def pack(t):
        if t.untyped_storage().data_ptr() not in known:
            packed[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = checkpoint.checkpoint(lambda a: layer(a, position_embeddings=(cos, sin)), x, use_reentrant=True)
        assert not packed                      # forward keeps only the layer's input
        (out[0] if isinstance(out, tuple) else out).float().sum().backward()
    m = read_hf_config(cfg)
    w = Workload(mode="lora", batch_size=B, seq_len=S, attention=attention, lora_targets=targets,
                 gradient_checkpointing=True)
    ctx = make_context(m, w, Precision(weights="bf16"), Framework())
    saved = _as_the_cpu_keeps(layer_costs(ctx, m)[0].saved, m.model_type, "bf16")
    assert "attention output" not in saved if attention == "eager" else "attention output" in saved
    assert sum(packed.values()) == sum(saved.values()) + R * ctx.tokens * 4 * len(targets)


@pytest.mark.parametrize("state", ["frozen", "adapted", "full"])
def test_what_qwen3_nexts_linear_attention_keeps_of_out_projs_input_matches_autograd(state):
    # The gated delta rule's layer (layer 0, linear attention; the torch fallbacks of causal_conv1d and
    # chunk_gated_delta_rule): the gated RMSNorm's output is out_proj's input, kept only as a linear keeps it.
    from pycore.training.activations import gated_deltanet
    targets = None if state == "full" else ["in_proj_qkvz"] + (["out_proj"] if state == "adapted" else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alive, outputs = _run_layer(_adapted(_model(QWEN3_NEXT, "sdpa", torch.bfloat16), targets), "model.layers",
                                    "linear_attn.out_proj")
    kept = sum(alive[ptr][0] for ptr in outputs if ptr in alive)
    casts = sum(n for ptr, (n, shape, inside) in alive.items() if inside and ptr not in outputs and shape[-1] != R)
    m, ctx = _context(QWEN3_NEXT, targets, "bf16", "flash")
    ctx = replace(ctx, adapted=frozenset({"out_proj"}) if state == "adapted" else frozenset())
    acc = Parts.of(ctx)
    gated_deltanet(ctx, acc, m)
    modelled = acc.items.get("linear attention out_proj input", 0)
    assert (kept, casts) == (modelled, sum(v for k, v in acc.items.items() if "adapters' dtype" in k))
    assert (kept == 0) == (state != "full")
