"""One adapter model for PEFT's methods: what a PEFT config trains and what it keeps during a step.

Each type is a few facts read from its forward in peft 0.21.2 (peft/tuners/<type>/layer.py):
- its trainable parameters per adapted module (adapter_params.py), shared ones, modules_to_save
  copies and trainable token rows;
- whether it keeps a copy of its input cast to the adapters' dtype (``x.to(lora_A.weight.dtype)``
  and the like, saved by the adapter's first matmul);
- whether it builds a full out x in weight each forward (LoHa, LoKr, HiRA, FourierFT, BOFT, ...), which
  F.linear then saves for backward, one per adapted module;
- virtual tokens (prompt tuning lengthens the sequence) or key/value prefixes (prefix tuning);
- state kept beside the optimizer (AdaLoRA's importance scores) and dropout masks.
The parameter counts and frozen buffers are checked against peft itself (tests/integration/
test_peft_counts.py); what each adapted module keeps for backward against autograd on the CPU
(tests/integration/test_peft_saved.py). No GPU run has measured them yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..errors import InputError
from ..model.spec import ModelSpec, kv_dim
from .adapter_params import PER_MODULE, oft_blocks, shared_params
from .peft_config import AdapterConfig, PROMPT_TYPES
from .peft_targets import Module, adapted_modules, model_modules, pattern_value, saved_modules

FP32 = 4
MASK_BYTES = 1

# What each type keeps for backward, per adapted module, read from its forward at 0.21.2 and checked by
# tests/integration/test_peft_saved.py, which records what autograd keeps of a one-linear model's forward:
#   (input copies in the adapters' dtype, base outputs kept in the adapters' dtype, out x in weights,
#    in x in matrices, out x in temporaries at the busiest moment)
#  LoRA family: _cast_input_dtype(x, lora_A.dtype) kept by lora_A (lora/layer.py Linear.forward);
#  LoHa/LoKr (lycoris_utils.py _get_delta_activations): F.linear(x.to(delta.dtype), delta) keeps both;
#   HadaWeight (loha/layer.py) keeps only the factors, its three products are temporaries;
#  HiRA (hira/layer.py line 266): F.linear(x, W0 * (B @ A)) keeps the out x in product;
#  FourierFT: the inverse FFT of the dense spectrum is the delta; WaveFT also keeps the dense spectrum;
#  SHiRA: a sparse delta (nnz = r(in + out)), nothing dense; C3A: FFT of the input blocks;
#  OFT (oft/layer.py lines 241-279): x.to(weight.dtype) and its blocked copy, both kept by the einsum;
#  BOFT (boft/layer.py lines 594-640): the in x in butterfly rotation and the rotated out x in weight;
#  HRA (hra/layer.py lines 239-272): one in x in product per reflection plus the identity, the fp32 copy of
#   W0 and the rotated weight; PEANuT: the fp32 copy of W0 and its tweaked delta;
#  RandLoRA/DEFT/AdaLoRA: the adapter's output (out wide); VeRA/PVeRA: lambda_b's input (out wide) only;
#  IA3: x.to(ia3 dtype) for feed-forward modules, the base output (compute dtype) for the others;
#  RoAd (road/layer.py lines 175-188): the base output cast to the adapters' dtype and its rotated copy;
#  MiSS: sums of input blocks only (r wide); GLoRA: x.to(fp32) only; BEFT: a bias add keeps nothing.
FACTS = {
    "LORA": (1, 0, 0, 0, 0), "ADALORA": (1, 1, 0, 0, 0), "DELORA": (1, 0, 0, 0, 0), "GRALORA": (1, 0, 0, 0, 0),
    "RANDLORA": (1, 1, 0, 0, 0), "VERA": (0, 1, 0, 0, 0), "PVERA": (0, 1, 0, 0, 0), "POLY": (1, 0, 0, 0, 0),
    "LILY": (1, 0, 0, 0, 0), "PEANUT": (1, 0, 2, 0, 1), "DEFT": (1, 1, 0, 0, 0), "HIRA": (1, 0, 1, 0, 1),
    "MISS": (0, 0, 0, 0, 0), "LOHA": (1, 0, 1, 0, 3), "LOKR": (1, 0, 1, 0, 1), "FOURIERFT": (1, 0, 1, 0, 2),
    "WAVEFT": (1, 0, 2, 0, 2), "SHIRA": (1, 0, 0, 0, 0), "C3A": (1, 0, 0, 0, 0), "OFT": (2, 0, 0, 0, 0),
    "BOFT": (1, 0, 1, 1, 2), "HRA": (1, 0, 2, None, 1), "GLORA": (1, 0, 0, 0, 1), "IA3": (0, 0, 0, 0, 0),
    "BEFT": (0, 0, 0, 0, 0), "ROAD": (0, 2, 0, 0, 0), "LN_TUNING": (0, 0, 0, 0, 0), "UNILORA": (1, 0, 0, 0, 0),
    "VBLORA": (1, 0, 0, 0, 0), "TRAINABLE_TOKENS": (0, 0, 0, 0, 0),
}
# Types that keep x itself in its own dtype (none in 0.21.2: VeRA's F.linear(x, vera_A) multiplies by a frozen
# buffer, so x is not kept).
OWN_DTYPE_INPUT = ()


@dataclass(frozen=True)
class Kept:
    """What one adapted module keeps for backward, in elements (see FACTS)."""

    input_copies: int = 0       # x cast to the adapters' dtype (in wide, per token)
    own_inputs: int = 0         # x in its own dtype (in wide, per token)
    outputs_ab: int = 0         # out-wide tensors per token in the adapters' dtype
    outputs_cb: int = 0         # out-wide tensors per token in the compute dtype
    deltas: int = 0             # out x in matrices (adapters' dtype)
    squares: int = 0            # in x in matrices (adapters' dtype)
    transient: int = 0          # out x in temporaries at the busiest moment
    masks: int = 0              # in-wide bool dropout masks per token


def module_kept(cfg: AdapterConfig, md: Module) -> Kept:
    t = cfg.peft_type
    copies, outs, deltas, squares, transient = FACTS[t]
    own, outs_cb = (1 if t in OWN_DTYPE_INPUT else 0), 0
    if t == "HRA":
        squares = cfg.get("r") + 1
    if t == "IA3":
        ff = _is_ff(cfg, md)
        copies, outs_cb = (1, 0) if ff else (0, 1)
    if cfg.get("use_dora"):
        # lora/dora.py lines 153-165: (m/|W| - 1) * base_result keeps the base output, m/|W| * lora_result the
        # LoRA output; the norm of W + dW is taken on detached fp32 out x in temporaries
        outs, outs_cb, transient = outs + 1, outs_cb + 1, 3
    return Kept(copies, own, outs, outs_cb, deltas, squares, transient, 1 if _dropout(cfg) else 0)


def module_saved_bytes(cfg: AdapterConfig, md: Module, tokens: int, compute_bytes: int, adapter_bytes: int,
                       mask_bytes: int = MASK_BYTES) -> int:
    """Bytes one adapted module keeps for backward with ``tokens`` tokens (the input copy included)."""
    k = module_kept(cfg, md)
    i, o = md.in_features, md.out_features
    per_token = (k.input_copies * i + k.outputs_ab * o) * adapter_bytes + (k.own_inputs * i + k.outputs_cb * o) * \
        compute_bytes + k.masks * i * mask_bytes
    return tokens * per_token + (k.deltas * o * i + k.squares * i * i) * adapter_bytes


# Each type as peft 0.21.2 names it: its tuner class (peft/tuners/<type>/model.py: LoHaModel, IA3Model,
# VBLoRAModel, ...) and the method's name in the class docstring (SHiRA, GLoRA, PEANuT, DEFT, RandLoRA, DeLoRA);
# LoRA with use_dora=True is DoRA (lora/dora.py).
NAMES = {"LORA": "LoRA", "ADALORA": "AdaLoRA", "DELORA": "DeLoRA", "GRALORA": "GraLoRA", "RANDLORA": "RandLoRA",
         "VERA": "VeRA", "PVERA": "PVeRA", "POLY": "Poly", "LILY": "Lily", "PEANUT": "PEANuT", "DEFT": "DEFT",
         "HIRA": "HiRA", "MISS": "MiSS", "LOHA": "LoHa", "LOKR": "LoKr", "FOURIERFT": "FourierFT", "WAVEFT": "WaveFT",
         "SHIRA": "SHiRA", "C3A": "C3A", "OFT": "OFT", "BOFT": "BOFT", "HRA": "HRA", "GLORA": "GLoRA", "IA3": "IA3",
         "BEFT": "BEFT", "ROAD": "RoAd", "LN_TUNING": "LN Tuning", "UNILORA": "UniLoRA", "VBLORA": "VBLoRA",
         "TRAINABLE_TOKENS": "Trainable Tokens"}


def adapter_name(cfg: AdapterConfig) -> str:
    """The adapter's name as peft gives it (NAMES), DoRA for LoRA with use_dora."""
    if cfg.peft_type == "LORA" and cfg.get("use_dora"):
        return "DoRA"
    return NAMES.get(cfg.peft_type, cfg.peft_type)


# Types whose per-module parameters are an r x in and an out x r matrix (plus vectors).
MATRIX_PAIRS = ("LORA", "HIRA", "DELORA")
DROPOUT_KEY = {"LORA": "lora_dropout", "ADALORA": "lora_dropout", "VERA": "vera_dropout", "PVERA": "pvera_dropout",
               "HIRA": "hira_dropout", "GRALORA": "gralora_dropout", "MISS": "miss_dropout",
               "RANDLORA": "randlora_dropout", "VBLORA": "vblora_dropout", "DEFT": "deft_dropout"}
# AdaLoRA's RankAllocator (adalora/layer.py update_ipt) keeps ipt, exp_avg_ipt and exp_avg_unc for every
# lora_A, lora_B and lora_E: three tensors the size of the adapter.
ADALORA_SCORE_COPIES = 3

# PEFT's default target modules by model_type (peft/utils/constants.py lines 67-110, 197-265), for the
# model types this planner reads; others must name target_modules.
_LORA_DEFAULT = {"llama": ("q_proj", "v_proj"), "mistral": ("q_proj", "v_proj"), "mixtral": ("q_proj", "v_proj"),
                 "qwen2": ("q_proj", "v_proj"), "qwen3": ("q_proj", "v_proj"), "gemma": ("q_proj", "v_proj"),
                 "gemma2": ("q_proj", "v_proj"), "gemma3_text": ("q_proj", "v_proj"), "gpt2": ("c_attn",),
                 "bert": ("query", "value"), "gpt_neox": ("query_key_value",), "chatglm": ("query_key_value",),
                 "gpt_bigcode": ("c_attn",), "phi": ("q_proj", "v_proj", "fc1", "fc2"), "falcon": ("query_key_value",)}
DEFAULT_TARGETS = {
    "IA3": {"llama": ("k_proj", "v_proj", "down_proj"), "mistral": ("k_proj", "v_proj", "down_proj"),
            "gpt2": ("c_attn", "mlp.c_proj"), "bert": ("key", "value", "output.dense"),
            "qwen2": ("q_proj", "v_proj", "down_proj"), "gemma": ("q_proj", "v_proj", "down_proj")},
    "BEFT": {"llama": ("v_proj",), "mistral": ("v_proj",), "bert": ("value",), "gemma": ("v_proj",), "qwen2": ("v_proj",)},
    "LN_TUNING": {"llama": ("input_layernorm", "post_attention_layernorm", "norm"), "gpt2": ("ln_1", "ln_2", "ln_f"),
                  "mistral": ("input_layernorm", "post_attention_layernorm", "norm"),
                  "gemma": ("input_layernorm", "post_attention_layernorm", "norm"), "qwen2": ("post_attention_layernorm",)},
    "FOURIERFT": {**_LORA_DEFAULT, "gpt2": ("mlp.c_proj",)}, "C3A": {**_LORA_DEFAULT, "gpt2": ("mlp.c_proj",)},
    "TRAINABLE_TOKENS": {},
}
IA3_FEEDFORWARD = {"llama": ("down_proj",), "mistral": ("down_proj",), "gpt2": ("mlp.c_proj",), "bert": ("output.dense",),
                   "qwen2": ("down_proj",), "gemma": ("down_proj",)}


@dataclass(frozen=True)
class AdapterPlan:
    """What a PEFT config trains and keeps, for the whole model."""

    peft_type: str
    trainable: int                 # parameters with requires_grad (peft's print_trainable_parameters)
    shapes: tuple = ()             # ((rows, cols), how many) of the trainable tensors, for shape-aware optimizers
    adapted_names: frozenset = frozenset()    # linear names whose adapter keeps an input copy
    input_elements_per_token: int = 0         # in_features of the modules whose first input copy the layer model counts
    extra_input_elements_per_token: int = 0   # further input copies in the adapters' dtype (OFT's blocked copy)
    own_input_elements_per_token: int = 0     # inputs kept in their own dtype (VeRA)
    output_ab_elements_per_token: int = 0     # out-wide tensors in the adapters' dtype (DoRA, RoAd, RandLoRA, ...)
    output_cb_elements_per_token: int = 0     # out-wide tensors in the compute dtype (DoRA's base output, IA3)
    delta_elements: int = 0        # out x in and in x in matrices saved for backward, all adapted modules
    delta_transient: int = 0       # out x in temporaries of the largest adapted module
    dropout_elements_per_token: int = 0
    virtual_tokens: int = 0        # prompt tokens joined to every sequence
    prefix_tokens: int = 0         # key/value prefix tokens in every layer
    adaption_layers: int = 0       # adaption prompt: layers with a gated prompt attention
    adaption_len: int = 0
    frozen_buffers: int = 0        # elements of non-trainable adapter buffers (VeRA's projections, BOFT's permutations)
    index_elements: int = 0        # int64 index buffers (UniLoRA's indices, OFT's triangle indices)
    saved_copies: int = 0          # modules_to_save: elements of the trainable copies
    score_copies: int = 0          # AdaLoRA: importance-score tensors the size of the adapter
    fp32_params: bool = False      # kept in fp32 whatever the model's dtype (C3A's kernel, prompt encoders)


def default_targets(cfg: AdapterConfig, m: ModelSpec):
    table = DEFAULT_TARGETS.get(cfg.peft_type, _LORA_DEFAULT)
    if cfg.peft_type == "TRAINABLE_TOKENS":
        return None
    return table.get(m.model_type) or (table.get(m.family) if m.family in ("gpt2", "bert") else None)


def adapter_plan(m: ModelSpec, cfg: AdapterConfig, where: str = "workload.peft_config") -> AdapterPlan:
    """The plan of ``cfg`` on model ``m``; InputError naming the field for configs that cannot apply."""
    t = cfg.peft_type
    if t in PROMPT_TYPES or t == "ADAPTION_PROMPT":
        return _prompt_plan(m, cfg, where)
    if t == "TRAINABLE_TOKENS":
        n = len(set(cfg.get("token_indices")))
        if not n:
            raise InputError(where + ".token_indices", "must list at least one token id")
        _check_tokens(m, cfg.get("token_indices"), where + ".token_indices")
        return AdapterPlan(t, n * m.hidden_size, (((n, m.hidden_size), 1),))
    if t == "IA3" and cfg.get("feedforward_modules") is None:
        from dataclasses import replace
        cfg = replace(cfg, knobs=tuple((k, IA3_FEEDFORWARD.get(m.model_type, ()) if k == "feedforward_modules" else v)
                                       for k, v in cfg.knobs))
    if t in LINEAR_ONLY and m.family == "gpt2":
        raise InputError(where + ".peft_type", f"{t} adapts nn.Linear only; GPT-2's projections are Conv1D")
    mods = adapted_modules(m, cfg, where, default_targets(cfg, m))
    _check_patterns(cfg, mods, where)
    per = PER_MODULE[t]
    counts = [per(cfg, md, where) if per else 0 for md in mods]
    targets = cfg.targets if cfg.targets is not None else default_targets(cfg, m)
    trainable = sum(counts) + shared_params(cfg, mods, where, tuple(targets) if isinstance(targets, (list, tuple)) else targets)
    copies = saved_modules(m, cfg, where)
    trainable += sum(md.params() for md in copies) + _bias_params(m, cfg, mods) + _token_params(m, cfg, where)
    lin = [md for md in mods if md.kind in ("linear", "head")]
    kept = [(md, module_kept(cfg, md)) for md in lin]
    first = [md for md, k in kept if k.input_copies]
    largest = max((k.transient * md.in_features * md.out_features for md, k in kept), default=0)
    return AdapterPlan(
        peft_type=t, trainable=trainable, shapes=_shapes(cfg, mods, counts) + _extra_shapes(trainable, mods, counts),
        adapted_names=frozenset(md.path.rsplit(".", 1)[-1] for md in first),
        input_elements_per_token=sum(md.in_features for md in first),
        extra_input_elements_per_token=sum(max(0, k.input_copies - 1) * md.in_features for md, k in kept),
        own_input_elements_per_token=sum(k.own_inputs * md.in_features for md, k in kept),
        output_ab_elements_per_token=sum(k.outputs_ab * md.out_features for md, k in kept),
        output_cb_elements_per_token=sum(k.outputs_cb * md.out_features for md, k in kept),
        delta_elements=sum(k.deltas * md.out_features * md.in_features + k.squares * md.in_features ** 2
                           for md, k in kept),
        delta_transient=largest,
        dropout_elements_per_token=sum(k.masks * md.in_features for md, k in kept),
        frozen_buffers=_buffers(cfg, lin), index_elements=_indices(cfg, lin), saved_copies=sum(md.params() for md in copies),
        score_copies=ADALORA_SCORE_COPIES if t == "ADALORA" else 0, fp32_params=t == "C3A",
    )


def _is_ff(cfg: AdapterConfig, md: Module) -> bool:
    ff = cfg.get("feedforward_modules") or ()
    if isinstance(ff, str):
        import re
        return re.fullmatch(ff, md.path) is not None
    return any(md.path.endswith(k) for k in ff)


def _dropout(cfg: AdapterConfig) -> bool:
    key = DROPOUT_KEY.get(cfg.peft_type)
    return bool(key and cfg.get(key))


def _shapes(cfg: AdapterConfig, mods, counts) -> tuple:
    """(shape, how many) of the trainable tensors, for shape-aware optimizers (Adafactor factors matrices):
    the A and B matrices of the LoRA-like types (lora/layer.py: lora_A r x in, lora_B out x r; DoRA's
    magnitude a vector), and one vector of the module's count for the other types."""
    out: dict = {}

    def add(shape, n=1):
        out[shape] = out.get(shape, 0) + n
    for md, c in zip(mods, counts):
        if cfg.peft_type in MATRIX_PAIRS and c:
            r = pattern_value(cfg.get("rank_pattern"), md.path, cfg.get("r"))
            add((r, md.in_features))
            add((md.out_features, r))
            if c > r * (md.in_features + md.out_features):
                add((c - r * (md.in_features + md.out_features),))
        elif c:
            add((c,))
    return tuple(out.items())


def _extra_shapes(trainable: int, mods, counts) -> tuple:
    """Shared parameters, modules_to_save copies and token rows, as one vector."""
    rest = trainable - sum(counts)
    return (((rest,), 1),) if rest > 0 else ()


def _buffers(cfg: AdapterConfig, lin) -> int:
    """Frozen tensors the adapter stores beside its parameters."""
    t = cfg.peft_type
    if t in ("VERA", "PVERA") and lin:
        # vera/model.py _init_vera_A_vera_B: one A (r x largest in) and B (largest out x r), shared;
        # pvera/model.py lines 116-117: A is 2r x largest in
        r = cfg.get("r")
        return r * (2 if t == "PVERA" else 1) * max(md.in_features for md in lin) + max(md.out_features for md in lin) * r
    if t == "BOFT":
        # boft/layer.py line 354: boft_P, (factor) permutation matrices of in x in per module
        return sum(cfg.get("boft_n_butterfly_factor") * md.in_features ** 2 for md in lin)
    if t == "RANDLORA" and lin:
        # randlora/model.py lines 100-204: from the elementwise largest (out, in) of the targets, A is
        # r x 1 x min_dim and B max_dim x bases x r with bases = ceil(min_dim / r)
        out, inp = max(md.out_features for md in lin), max(md.in_features for md in lin)
        r, low, high = cfg.get("r"), min(out, inp), max(out, inp)
        return r * low + high * -(-low // r) * r
    if t == "UNILORA":
        # unilora/layer.py lines 101-119: per module the scales of A (r x in) and B (out x r)
        return sum(cfg.get("r") * (md.in_features + md.out_features) for md in lin)
    return 0


def _indices(cfg: AdapterConfig, lin) -> int:
    """int64 index buffers: UniLoRA's indices into theta_d (r x in and out x r per module, unilora/layer.py
    lines 101-102) and OFT's upper-triangle rows and cols (oft/layer.py lines 100-102)."""
    if cfg.peft_type == "UNILORA":
        return sum(cfg.get("r") * (md.in_features + md.out_features) for md in lin)
    if cfg.peft_type == "OFT":
        return sum(2 * (bs * (bs - 1) // 2) for bs in (oft_blocks(cfg, md)[1] for md in lin))
    return 0


def _bias_params(m: ModelSpec, cfg: AdapterConfig, mods) -> int:
    """bias='all' trains every bias of the model, 'lora_only' those of the adapted modules (peft's
    _mark_only_adapters_as_trainable)."""
    mode = cfg.get("bias", "none")
    if mode == "lora_only":
        return sum(md.out_features for md in mods if md.bias)
    if mode == "all":
        return sum(md.out_features for md in model_modules(m) if md.bias and md.kind != "norm") + \
            sum(md.out_features for md in model_modules(m) if md.kind == "norm" and md.in_features == 2)
    return 0


def _token_params(m: ModelSpec, cfg: AdapterConfig, where: str) -> int:
    """trainable_token_indices: one trainable row per token of the embedding (a tied output layer shares it)."""
    tokens = cfg.get("trainable_token_indices")
    if not tokens:
        return 0
    if tokens and isinstance(tokens[0], tuple):
        return sum(len(set(ids)) * m.hidden_size for _, ids in tokens)
    _check_tokens(m, tokens, where + ".trainable_token_indices")
    return len(set(tokens)) * m.hidden_size


def _check_tokens(m: ModelSpec, ids, where: str) -> None:
    bad = [i for i in ids if i >= m.vocab_size]
    if bad:
        raise InputError(where, f"token id {bad[0]} is outside the vocabulary ({m.vocab_size:,})")


def _check_patterns(cfg: AdapterConfig, mods, where: str) -> None:
    """A rank_pattern-style key that matches no adapted module, or two keys that give one module
    different values, is an error naming the key (PEFT would silently take the first)."""
    import re
    for key in ("rank_pattern", "alpha_pattern", "n_frequency_pattern", "block_size_pattern"):
        pattern = cfg.get(key)
        if not pattern:
            continue
        for name, value in pattern:
            hits = [md for md in mods if re.match(rf"(.*\.)?({name})$", md.path)]
            if not hits:
                raise InputError(f"{where}.{key}", f"key {name!r} matches no adapted module")
            for other, v2 in pattern:
                if other != name and v2 != value and any(re.match(rf"(.*\.)?({other})$", md.path) for md in hits):
                    raise InputError(f"{where}.{key}", f"keys {name!r} and {other!r} both match {hits[0].path} "
                                                       f"with different values ({value}, {v2})")


def _prompt_plan(m: ModelSpec, cfg: AdapterConfig, where: str) -> AdapterPlan:
    """Prompt-learning methods (peft/tuners/<type>/model.py) train an encoder outside the model."""
    t, d, L = cfg.peft_type, m.hidden_size, m.n_layers
    if t == "ADAPTION_PROMPT":
        layers = cfg.get("adapter_layers")
        if layers > L:
            raise InputError(where + ".adapter_layers", f"must be at most the model's {L} layers")
        n = cfg.get("adapter_len")
        # adaption_prompt/layer.py lines 55-59: adaption_prompt (1, len, hidden) and adaption_gate (1), per layer
        return AdapterPlan(t, layers * (n * d + 1), (((n, d), layers), ((1, 1), layers)), adaption_layers=layers,
                           adaption_len=n)
    subs = cfg.get("num_transformer_submodules", 1)
    n = cfg.get("num_virtual_tokens") if t != "CPT" else len(cfg.get("cpt_token_ids") or (0,))
    total = n * subs
    if t == "PROMPT_TUNING":          # prompt_tuning/model.py: Embedding(total, token_dim)
        return AdapterPlan(t, total * d, (((total, d), 1),), virtual_tokens=n, fp32_params=True)
    if t == "MULTITASK_PROMPT_TUNING":   # multitask_prompt_tuning/model.py lines 44-55
        tasks, ranks = cfg.get("num_tasks"), cfg.get("num_ranks")
        count = total * d + tasks * total * ranks + tasks * ranks * d
        return AdapterPlan(t, count, (((total, d), 1),), virtual_tokens=n, fp32_params=True)
    if t == "P_TUNING":
        return AdapterPlan(t, total * d + _p_tuning_encoder(cfg, d), (((total, d), 1),), virtual_tokens=n,
                           fp32_params=True)
    if t == "CPT":                    # cpt/model.py lines 45-61: a frozen embedding and a trainable delta
        return AdapterPlan(t, n * d, (((n, d), 1),), virtual_tokens=n, frozen_buffers=n * d, fp32_params=True)
    td = _prefix_dim(m)
    if t == "CARTRIDGE":              # cartridge/model.py lines 52-57: frozen and trainable KV rows
        trained = n - cfg.get("num_frozen_tokens")
        return AdapterPlan(t, trained * L * 2 * td, (((trained, L * 2 * td), 1),), prefix_tokens=n,
                           frozen_buffers=(n - trained) * L * 2 * td, fp32_params=True)
    # PREFIX_TUNING, prefix_tuning/model.py lines 66-79
    if cfg.get("prefix_projection"):
        h = cfg.get("encoder_hidden_size") or td
        count = n * td + td * h + h + h * L * 2 * td + L * 2 * td
    else:
        count = n * L * 2 * td
    return AdapterPlan(t, count, (((n, L * 2 * td), 1),), prefix_tokens=n, fp32_params=True)


def _prefix_dim(m: ModelSpec) -> int:
    """peft/utils/other.py lines 1198-1232: for models whose config has num_key_value_heads the prefix is
    head_dim x num_key_value_heads wide, else token_dim (the hidden size)."""
    return kv_dim(m) if m.family == "decoder" else m.hidden_size


def _p_tuning_encoder(cfg: AdapterConfig, d: int) -> int:
    """p_tuning/model.py lines 84-120: the MLP (three linears, hidden width encoder_hidden_size, default
    token_dim) or a bidirectional LSTM of encoder_num_layers and its two-linear head."""
    h = cfg.get("encoder_hidden_size") or d
    if cfg.get("encoder_reparameterization_type") == "MLP":
        return (d * h + h) + (h * h + h) + (h * d + d)
    n, layers = 0, cfg.get("encoder_num_layers")
    for i in range(layers):
        inp = d if i == 0 else 2 * h
        n += 2 * (4 * h * (inp + h) + 8 * h)          # two directions: W_ih, W_hh, b_ih, b_hh
    return n + (2 * h * 2 * h + 2 * h) + (2 * h * d + d)



@lru_cache(maxsize=128)
def plan_for(m: ModelSpec, cfg: AdapterConfig) -> AdapterPlan:
    """adapter_plan, cached: the step's terms and the model states read it many times per estimate."""
    return adapter_plan(m, cfg)


# GLoRA and BEFT accept nn.Linear only (glora/layer.py, beft/model.py raise for GPT-2's Conv1D).
LINEAR_ONLY = ("GLORA", "BEFT")
