"""Which modules a PEFT config adapts: the model's module names as transformers names them, and PEFT
0.21.2's rules for matching target_modules, exclude_modules, layers_to_transform and modules_to_save.

Matching follows ``check_target_module_exists`` (peft/tuners/tuners_utils.py lines 2337-2412): a
string is a regex matched against the whole name (``re.fullmatch``, peft/utils/other.py line 1521),
a list matches a name equal to an entry or ending in ``.entry``; layers_to_transform applies to
lists only and reads the first numbered segment; modules_to_save and exclude_modules are never
adapted. 'all-linear' takes every nn.Linear and Conv1D but the output layer
(``_maybe_include_all_linear_layers``, tuners_utils.py lines 2430-2490). rank_pattern keys match
the end of a name (``get_pattern_key``, other.py line 1527), the first matching key wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ..errors import InputError
from ..model.params import Linear, linears
from ..model.spec import ModelSpec, attention_layers, is_classifier, is_moe_layer, norm_params_per_unit
from .peft_config import AdapterConfig


@dataclass(frozen=True)
class Module:
    """One module of the model: a linear (kind 'linear'), a norm, an embedding or the output layer."""

    path: str
    kind: str                 # linear | norm | embedding | head
    in_features: int
    out_features: int
    bias: bool
    layer: int = -1           # the decoder layer it sits in (-1: outside the layers)
    group: str = ""           # the Linear's group (attention, mlp, router, shared, head)

    def params(self) -> int:
        if self.kind == "norm":
            return self.in_features * self.out_features
        return self.in_features * self.out_features + (self.out_features if self.bias else 0)


# Where each family keeps its layers and the submodule of each group (transformers modeling files).
_LAYER = {"decoder": "model.layers.{i}", "gpt2": "transformer.h.{i}", "bert": "bert.encoder.layer.{i}",
          "neox": "gpt_neox.layers.{i}", "chatglm": "transformer.encoder.layers.{i}"}
_GROUP = {"decoder": {"attention": "self_attn", "mlp": "mlp", "router": "mlp", "shared": "mlp.shared_expert"},
          "gpt2": {"attention": "attn", "mlp": "mlp"},
          "neox": {"attention": "attention", "mlp": "mlp"},
          "chatglm": {"attention": "self_attention", "mlp": "mlp"}}
_BERT = {("attention", "query"): "attention.self.query", ("attention", "key"): "attention.self.key",
         ("attention", "value"): "attention.self.value", ("attention", "dense"): "attention.output.dense"}
_LINEAR_ATTENTION = ("in_proj_qkvz", "in_proj_ba", "out_proj")


def _layer_indices(m: ModelSpec, lin: Linear) -> list[int]:
    L = m.n_layers
    if lin.group in ("router", "shared"):
        return [i for i in range(L) if is_moe_layer(m, i)]
    if lin.group == "mlp" and m.n_experts:
        return [i for i in range(L) if not is_moe_layer(m, i)]
    if lin.group == "attention" and m.linear_attn_layers:
        full = _full_attention(m)
        linear = lin.name in _LINEAR_ATTENTION
        return [i for i in range(L) if (i in full) != linear]
    return list(range(L))


def _full_attention(m: ModelSpec) -> set:
    """Layers with softmax attention when the others are linear (Qwen3-Next: every full_attention_interval-th)."""
    n = attention_layers(m)
    step = max(1, m.n_layers // max(1, n))
    return {i for i in range(m.n_layers) if (i + 1) % step == 0} if n else set()


@lru_cache(maxsize=64)
def model_modules(m: ModelSpec) -> tuple[Module, ...]:
    """Every linear, norm and embedding of the model, with the name transformers gives it (Llama-style
    decoders as modeling_llama.py, GPT-2, BERT's masked-LM model, GPT-NeoX, ChatGLM)."""
    out: list[Module] = []
    fam = m.family
    mlp_seen = 0
    for lin in linears(m):
        if lin.group == "experts":
            continue            # transformers 5 stores experts as 3-D parameters, not nn.Linear
        if lin.group == "head":
            out.append(Module("cls.predictions.transform.dense", "linear", lin.in_features, lin.out_features, lin.bias,
                              group="head"))
            continue
        for i in _layer_indices(m, lin):
            out.append(Module(_linear_path(m, lin, i, mlp_seen), "linear", lin.in_features, lin.out_features,
                              lin.bias, i, lin.group))
        if fam == "bert" and lin.group == "mlp":
            mlp_seen += 1
    out += _norms(m) + _embeddings(m)
    return tuple(out)


def _linear_path(m: ModelSpec, lin: Linear, i: int, mlp_seen: int) -> str:
    base = _LAYER[m.family].format(i=i)
    if m.family == "bert":
        sub = _BERT.get((lin.group, lin.name)) or ("intermediate.dense" if mlp_seen == 0 else "output.dense")
        return f"{base}.{sub}"
    if m.family == "decoder" and lin.name in _LINEAR_ATTENTION and m.linear_attn_layers:
        return f"{base}.linear_attn.{lin.name}"
    return f"{base}.{_GROUP[m.family][lin.group]}.{lin.name}"


def _norms(m: ModelSpec) -> list[Module]:
    h, units = m.hidden_size, norm_params_per_unit(m)
    fam = m.family
    names = {"decoder": ["input_layernorm", "post_attention_layernorm"], "gpt2": ["ln_1", "ln_2"],
             "bert": ["attention.output.LayerNorm", "output.LayerNorm"],
             "neox": ["input_layernorm", "post_attention_layernorm"],
             "chatglm": ["input_layernorm", "post_attention_layernorm"]}[fam]
    if fam == "decoder" and m.norms_per_layer == 4:
        names = ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"]
    out = [Module(f"{_LAYER[fam].format(i=i)}.{n}", "norm", units, h, False, i) for i in range(m.n_layers) for n in names]
    final = {"decoder": ["model.norm"], "gpt2": ["transformer.ln_f"], "neox": ["gpt_neox.final_layer_norm"],
             "chatglm": ["transformer.encoder.final_layernorm"],
             "bert": ["bert.embeddings.LayerNorm"] + ([] if is_classifier(m) else ["cls.predictions.transform.LayerNorm"])}
    return out + [Module(n, "norm", units, h, False) for n in final[fam]]


def _embeddings(m: ModelSpec) -> list[Module]:
    h, V = m.hidden_size, m.vocab_size
    emb = {"decoder": "model.embed_tokens", "gpt2": "transformer.wte", "bert": "bert.embeddings.word_embeddings",
           "neox": "gpt_neox.embed_in", "chatglm": "transformer.embedding.word_embeddings"}[m.family]
    head = {"decoder": "lm_head", "gpt2": "lm_head", "bert": "cls.predictions.decoder", "neox": "embed_out",
            "chatglm": "transformer.output_layer"}[m.family]
    out = [Module(emb, "embedding", V, h, False)]
    if not is_classifier(m):
        out.append(Module(head, "head", h, V, m.family == "bert"))
    return out


def target_matches(cfg: AdapterConfig, path: str) -> bool:
    """PEFT's check_target_module_exists for one module name (tuners_utils.py lines 2337-2412)."""
    if _listed(cfg.exclude, path) or any(re.match(rf"(^|.*\.){s}($|\..*)", path) for s in cfg.modules_to_save):
        return False
    t = cfg.targets
    if isinstance(t, str):
        return re.fullmatch(t, path) is not None
    found = path in t or any(path.endswith("." + k) for k in t)
    if found and cfg.layers_to_transform:
        return _layer_index(cfg, path) in cfg.layers_to_transform
    return found


def _listed(names, path: str) -> bool:
    if not names:
        return False
    if isinstance(names, str):
        return re.fullmatch(names, path) is not None
    return path in names or any(path.endswith("." + k) for k in names)


def _layer_index(cfg: AdapterConfig, path: str):
    if not cfg.layers_pattern:
        match = re.match(r".*?\.[^.]*\.(?P<idx>\d+)\.", path)
    else:
        match = None
        for pattern in cfg.layers_pattern:
            match = re.match(rf"(?:^|.*?\.){pattern}\.(?P<idx>\d+)\.", path)
            if match:
                break
    return int(match.group("idx")) if match else None


def adapted_modules(m: ModelSpec, cfg: AdapterConfig, where: str, default_targets) -> tuple[Module, ...]:
    """The modules the config adapts; InputError naming target_modules when they match none."""
    targets = cfg.targets if cfg.targets is not None else default_targets
    if targets is None:
        raise InputError(where + ".target_modules", f"is not given and PEFT has no default for model_type "
                                                    f"{m.model_type or m.family!r}; name the modules to adapt")
    mods = model_modules(m)
    if targets == "all-linear":
        every = _as_list(cfg, tuple(md.path for md in mods if md.kind == "linear" and md.group != "router"))
        picked = tuple(md for md in mods if md.kind == "linear" and target_matches(every, md.path))
    else:
        kind = ("norm",) if cfg.peft_type == "LN_TUNING" else ("linear",)
        c = cfg if cfg.targets is not None else _as_list(cfg, targets)
        picked = tuple(md for md in mods if md.kind in kind + ("head",) and target_matches(c, md.path))
        if cfg.peft_type != "LN_TUNING":
            picked = tuple(md for md in picked if md.kind in ("linear", "head"))
    if not picked:
        raise InputError(where + ".target_modules", "matches no module of this model; its modules are named like "
                         + ", ".join(_examples(m)))
    return picked


def _as_list(cfg: AdapterConfig, targets) -> AdapterConfig:
    from dataclasses import replace
    return replace(cfg, targets=tuple(targets) if not isinstance(targets, str) else targets)


def _examples(m: ModelSpec) -> list[str]:
    seen, out = set(), []
    for md in model_modules(m):
        if md.layer in (-1, 0) and md.path not in seen:
            seen.add(md.path)
            out.append(md.path)
    return out[:14]


def pattern_value(pattern: tuple, path: str, default):
    """The value of the first rank_pattern-style key matching the end of ``path`` (get_pattern_key)."""
    for key, value in pattern or ():
        if re.match(rf"(.*\.)?({key})$", path):
            return value
    return default


def saved_modules(m: ModelSpec, cfg: AdapterConfig, where: str) -> tuple[Module, ...]:
    """modules_to_save: each named module gets a trainable copy (ModulesToSaveWrapper, peft/utils/other.py)."""
    out = []
    for i, name in enumerate(cfg.modules_to_save):
        hits = tuple(md for md in model_modules(m) if md.path == name or md.path.endswith("." + name))
        if not hits:
            raise InputError(f"{where}.modules_to_save[{i}]", f"{name!r} matches no module of this model")
        out += hits
    return tuple(dict.fromkeys(out))
