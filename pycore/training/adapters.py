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
The memory terms are read from the code path, not calibrated against a measured run; the
parameter counts are checked against peft itself (tests/integration/test_peft_counts.py).
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

# What each type keeps, per adapted module: (input copy in the adapters' dtype, full out x in weights saved
# for backward, out x in temporaries at the module's busiest moment). Read from each forward at 0.21.2:
#  LoRA/AdaLoRA/DeLoRA/GraLoRA/RandLoRA/VeRA/PVeRA/Poly/Lily/Peanut/DEFT/HiRA/MiSS: _cast_input_dtype(x, A.dtype)
#   before the first adapter matmul, which saves it (lora/layer.py Linear.forward);
#  LoHa/LoKr (lycoris_utils.py LycorisLayer._get_delta_activations): get_delta_weight() then
#   F.linear(x.to(delta.dtype), delta) saves the out x in delta; HadaWeight (loha/layer.py) saves only factors;
#  HiRA (hira/layer.py line 266): F.linear(x, W0 * (B @ A)) saves the out x in product;
#  FourierFT/WaveFT: a dense out x in spectrum, its inverse transform is the delta F.linear saves;
#  SHiRA: a dense delta from the sparse values; C3A: FFT of the input blocks, no out x in weight;
#  OFT (oft/layer.py lines 241-279): rotates the input, x.to(weight.dtype) kept by the einsum;
#  BOFT (boft/layer.py lines 594-640): builds in x in rotations and the rotated out x in weight;
#  HRA: the in x in reflection product and the rotated out x in weight; GLoRA: W0 + W0*A + B, out x in;
#  IA3/BEFT/RoAd: an element-wise scale or bias of the base output (IA3 feed-forward: of the input).
FACTS = {
    "LORA": (True, 0, 0), "ADALORA": (True, 0, 0), "DELORA": (True, 0, 0), "GRALORA": (True, 0, 0),
    "RANDLORA": (True, 1, 1), "VERA": (True, 0, 0), "PVERA": (True, 0, 0), "POLY": (True, 0, 0),
    "LILY": (True, 0, 0), "PEANUT": (False, 0, 0), "DEFT": (True, 0, 0), "HIRA": (True, 1, 1), "MISS": (True, 0, 0),
    "LOHA": (True, 1, 3), "LOKR": (True, 1, 1), "FOURIERFT": (True, 1, 2), "WAVEFT": (True, 1, 2),
    "SHIRA": (True, 1, 1), "C3A": (True, 0, 0), "OFT": (True, 0, 0), "BOFT": (True, 1, 2), "HRA": (True, 1, 1),
    "GLORA": (True, 1, 2), "IA3": (False, 0, 0), "BEFT": (False, 0, 0), "ROAD": (False, 0, 0),
    "LN_TUNING": (False, 0, 0), "UNILORA": (True, 0, 0), "VBLORA": (True, 0, 0), "TRAINABLE_TOKENS": (False, 0, 0),
}
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
    input_elements_per_token: int = 0         # sum of in_features over adapted modules (all layers)
    delta_elements: int = 0        # out x in weights saved for backward, all adapted modules
    delta_transient: int = 0       # out x in temporaries of the largest adapted module
    dropout_elements_per_token: int = 0
    dora_elements_per_token: int = 0          # DoRA: base and LoRA outputs kept by the magnitude scaling
    output_elements_per_token: int = 0        # base outputs kept by an output scaling (IA3, RoAd)
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
    trainable = sum(counts) + shared_params(cfg, mods)
    copies = saved_modules(m, cfg, where)
    trainable += sum(md.params() for md in copies) + _bias_params(m, cfg, mods) + _token_params(m, cfg, where)
    keep_input, deltas, transients = FACTS[t]
    lin = [md for md in mods if md.kind in ("linear", "head")]
    largest = max((md.in_features * md.out_features for md in lin), default=0)
    dropout = _dropout(cfg)
    dora = bool(cfg.get("use_dora"))
    outputs = 0
    if t == "IA3":
        # ia3/layer.py lines 188-197: feed-forward modules keep x.to(ia3 dtype) for x * ia3_l; the others keep
        # the base output for result * ia3_l
        ff = [md for md in lin if _is_ff(cfg, md)]
        outputs = sum(md.out_features for md in lin if md not in ff)
        lin_in, keep_input = ff, True
    elif t == "ROAD":
        # road/layer.py lines 175-188: the base output, cast to the adapters' dtype, is rotated
        outputs, lin_in = sum(md.out_features for md in lin), lin
    else:
        lin_in = lin
    return AdapterPlan(
        peft_type=t, trainable=trainable, shapes=_shapes(cfg, mods, counts) + _extra_shapes(trainable, mods, counts),
        adapted_names=frozenset(md.path.rsplit(".", 1)[-1] for md in lin_in) if keep_input else frozenset(),
        input_elements_per_token=sum(md.in_features for md in lin_in) if keep_input else 0,
        output_elements_per_token=outputs,
        delta_elements=deltas * sum(md.in_features * md.out_features for md in lin),
        delta_transient=(3 if dora else transients) * largest,
        dropout_elements_per_token=sum(md.in_features for md in lin) if dropout else 0,
        dora_elements_per_token=sum(md.out_features for md in lin) if dora else 0,
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


def oft_block_info(cfg: AdapterConfig, md: Module) -> tuple[int, int]:
    return oft_blocks(cfg, md)


@lru_cache(maxsize=128)
def plan_for(m: ModelSpec, cfg: AdapterConfig) -> AdapterPlan:
    """adapter_plan, cached: the step's terms and the model states read it many times per estimate."""
    return adapter_plan(m, cfg)


# GLoRA and BEFT accept nn.Linear only (glora/layer.py, beft/model.py raise for GPT-2's Conv1D).
LINEAR_ONLY = ("GLORA", "BEFT")
