"""A PEFT adapter config (adapter_config.json) read by its ``peft_type``, as PEFT 0.21.2 defines them.

Every ``PeftType`` of peft 0.21.2 (peft/utils/peft_types.py lines 59-103) is known here: the modelled
ones list the config keys that change what the adapter trains or keeps, each checked like a request
field; the others are refused by name with the reason, never run as LoRA. Keys that only change the
initialisation or the saved file (init_lora_weights, revision, base_model_name_or_path, ...) are read
past. Keys that would change the adapter in ways this model does not follow (layer_replication,
target_parameters, EVA's rank redistribution, ...) are refused naming the key when they are set.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError, show
from ..schema import join_path

# peft/utils/peft_types.py lines 59-103 (peft 0.21.2): every type, in the enum's order.
PEFT_TYPES = (
    "PROMPT_TUNING", "MULTITASK_PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "LORA", "ADALORA", "ADAMSS", "BOFT",
    "ADAPTION_PROMPT", "IA3", "BEFT", "LILY", "LOHA", "LOKR", "OFT", "POLY", "LN_TUNING", "VERA", "FROD", "PVERA",
    "FOURIERFT", "GLORA", "XLORA", "HRA", "VBLORA", "UNILORA", "CPT", "MISS", "RANDLORA", "ROAD", "TRAINABLE_TOKENS",
    "HIRA", "SHIRA", "C3A", "WAVEFT", "OSF", "DELORA", "GRALORA", "CARTRIDGE", "TINYLORA", "PSOFT", "PEANUT",
    "SHADOW", "SUPERTUNING", "DEFT",
)

# Types read but not modelled, with the reason (the message names the type; none falls back to LoRA).
REFUSED = {
    "ADAMSS": "its subspace ranks are chosen by clustering the base weights (scikit-learn KMeans) at load time",
    "XLORA": "it mixes LoRA adapters that must already exist on disk; estimate those adapters' own config",
    "FROD": "its sparse trainable entries are chosen by a decomposition of the base weights at load time",
    "OSF": "its trainable subspace comes from an SVD of each base weight at load time (effective_rank rules)",
    "SHADOW": "it trains a separate shadow network whose size follows its own model config",
    "SUPERTUNING": "its trainable entries are selected from the base weights' magnitudes at load time",
    "PSOFT": "its orthogonal blocks and magnitudes follow an SVD of each base weight at load time",
    "TINYLORA": "its shared projections are sized by weight-tying groups resolved at load time",
}

PROMPT_TYPES = ("PROMPT_TUNING", "MULTITASK_PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "CPT", "CARTRIDGE")

# Keys of a tuner config (LoraConfig and the others, peft/tuners/*/config.py) that select modules.
_TARGETING = ("target_modules", "exclude_modules", "layers_to_transform", "layers_pattern", "modules_to_save")

# (key, kind, default). Kinds: pos (int >= 1), nat (int >= 0), num (number >= 0), bool, str, choice:a|b,
# names (list or regex string), pattern (name -> int), fpattern (name -> number), tokens (token ids).
_LORA_LIKE = (("r", "pos", 8), ("lora_alpha", "num", 8), ("lora_dropout", "num", 0.0), ("bias", "choice:none|all|lora_only", "none"),
              ("use_rslora", "bool", False), ("rank_pattern", "pattern", None), ("alpha_pattern", "fpattern", None),
              ("trainable_token_indices", "tokens", None), ("use_dora", "bool", False), ("lora_bias", "bool", False))
KNOBS = {
    "LORA": _LORA_LIKE,
    "ADALORA": _LORA_LIKE + (("init_r", "pos", 12), ("target_r", "pos", 8), ("total_step", "pos", None)),
    "LOHA": (("r", "pos", 8), ("alpha", "num", 8), ("rank_pattern", "pattern", None), ("alpha_pattern", "fpattern", None),
             ("rank_dropout", "num", 0.0), ("module_dropout", "num", 0.0)),
    "LOKR": (("r", "pos", 8), ("alpha", "num", 8), ("rank_pattern", "pattern", None), ("alpha_pattern", "fpattern", None),
             ("decompose_both", "bool", False), ("decompose_factor", "int", -1), ("rank_dropout", "num", 0.0)),
    "OFT": (("r", "nat", 0), ("oft_block_size", "nat", 32), ("block_share", "bool", False), ("module_dropout", "num", 0.0)),
    "BOFT": (("boft_block_size", "nat", 4), ("boft_block_num", "nat", 0), ("boft_n_butterfly_factor", "pos", 1),
             ("boft_dropout", "num", 0.0)),
    "IA3": (("feedforward_modules", "names", None),),
    "BEFT": (),
    "LN_TUNING": (),
    "VERA": (("r", "pos", 256), ("vera_dropout", "num", 0.0), ("save_projection", "bool", True)),
    "PVERA": (("r", "pos", 256), ("pvera_dropout", "num", 0.0)),
    "FOURIERFT": (("n_frequency", "pos", 1000), ("n_frequency_pattern", "pattern", None)),
    "WAVEFT": (("n_frequency", "pos", 2592), ("n_frequency_pattern", "pattern", None), ("proportional_parameters", "bool", False)),
    "HRA": (("r", "pos", 8),),
    "HIRA": (("r", "pos", 32), ("rank_pattern", "pattern", None), ("hira_dropout", "num", 0.0)),
    "SHIRA": (("r", "pos", 32),),
    "C3A": (("block_size", "pos", 256), ("block_size_pattern", "pattern", None)),
    "DELORA": (("r", "pos", 8), ("rank_pattern", "pattern", None), ("module_dropout", "num", 0.0)),
    "GRALORA": (("r", "pos", 32), ("hybrid_r", "nat", 0), ("gralora_k", "pos", 2), ("gralora_dropout", "num", 0.0)),
    "MISS": (("r", "pos", 64), ("mini_r", "pos", 1), ("init_weights", "str", "true"), ("miss_dropout", "num", 0.0)),
    "RANDLORA": (("r", "pos", 32), ("randlora_dropout", "num", 0.0)),
    "ROAD": (("variant", "choice:road_1|road_2|road_4", "road_1"), ("group_size", "pos", 64)),
    "VBLORA": (("r", "pos", 4), ("num_vectors", "pos", 256), ("vector_length", "pos", 256), ("vblora_dropout", "num", 0.0)),
    "UNILORA": (("r", "pos", 4), ("theta_d_length", "pos", 256)),
    "PEANUT": (("r", "pos", 32), ("depth", "nat", 0)),
    "DEFT": (("r", "pos", 8), ("para", "bool", False), ("deft_dropout", "num", 0.0)),
    "LILY": (("r", "pos", 32), ("stride_A", "pos", 1), ("num_B", "pos", 2)),
    "POLY": (("r", "pos", 8), ("n_tasks", "pos", 1), ("n_skills", "pos", 4), ("n_splits", "pos", 1)),
    "GLORA": (("r", "pos", 8), ("config_A_B", "choice:lora|vector|constant|none", "lora"),
              ("config_C", "choice:lora|vector|none", "lora"), ("config_D_E", "choice:constant|vector|none", "constant")),
    "TRAINABLE_TOKENS": (("token_indices", "ints", ()), ("target_modules", "names", None)),
    "PROMPT_TUNING": (("num_virtual_tokens", "pos", None), ("num_transformer_submodules", "pos", 1)),
    "MULTITASK_PROMPT_TUNING": (("num_virtual_tokens", "pos", None), ("num_tasks", "pos", 1), ("num_ranks", "pos", 1),
                                ("num_transformer_submodules", "pos", 1)),
    "P_TUNING": (("num_virtual_tokens", "pos", None), ("encoder_reparameterization_type", "choice:MLP|LSTM", "MLP"),
                 ("encoder_hidden_size", "pos", None), ("encoder_num_layers", "pos", 2),
                 ("num_transformer_submodules", "pos", 1)),
    "PREFIX_TUNING": (("num_virtual_tokens", "pos", None), ("prefix_projection", "bool", False),
                      ("encoder_hidden_size", "pos", None)),
    "CARTRIDGE": (("num_virtual_tokens", "pos", None), ("num_frozen_tokens", "nat", 1)),
    "CPT": (("cpt_token_ids", "ints", None),),
    "ADAPTION_PROMPT": (("adapter_len", "pos", None), ("adapter_layers", "pos", None)),
}
REQUIRED = {"PROMPT_TUNING": ("num_virtual_tokens",), "MULTITASK_PROMPT_TUNING": ("num_virtual_tokens",),
            "P_TUNING": ("num_virtual_tokens",), "PREFIX_TUNING": ("num_virtual_tokens",),
            "CARTRIDGE": ("num_virtual_tokens",), "ADAPTION_PROMPT": ("adapter_len", "adapter_layers"),
            "ADALORA": ("total_step",)}

# LoraConfig keys that change the adapter beyond this model: refused when set (peft/tuners/lora/config.py).
_UNMODELLED_LORA = ("layer_replication", "target_parameters", "eva_config", "use_qalora", "megatron_config",
                    "arrow_config", "kasa_config", "monteclora_config", "velora_config", "use_bdlora",
                    "alora_invocation_tokens")
MAX_PATTERN_LEN = 512          # a regex target_modules / exclude_modules string, at most this long

# Unbounded repeats in one regex: a failing match backtracks over C(len + k, k) splits of the name (about
# 40,000 for a 60-character module name and k = 3), for every module of the model.
MAX_REGEX_REPEATS = 3


def _safe_regex(where: str, text: str, budget: int) -> None:
    """A regex PEFT will match against module names: valid, and quick to fail on any of them."""
    import re
    try:
        re.compile(text)
    except re.error as e:
        raise InputError(where, f"is not a valid regular expression: {e}") from None
    if _unbounded_repeats(text) > budget:
        raise InputError(where, f"has more than {budget} unbounded repeats (*, +, {{n,}}): matching it against "
                                "every module name could take very long; merge them (.* covers .*.*)")
    if _nested_repeat(text):
        raise InputError(where, "repeats a group that itself repeats or alternates, such as (a+)+ or (a|b)*: such a "
                                "pattern can take exponential time to match; write it without the outer repeat")


def _unbounded_repeats(pattern: str) -> int:
    import re
    plain = re.sub(r"\\.|\[(?:\\.|[^\]])*\]", "x", pattern)       # escapes and classes stand for one character
    return len(re.findall(r"[*+]|\{\d*,\}", plain))


def _nested_repeat(pattern: str) -> bool:
    """Whether a repeated group's body repeats or alternates ((a+)+, ((a+))*, (a|b)*): Python's re
    backtracks exponentially on such patterns, and the page must never hang (PEFT's own regexes never
    need them)."""
    stack, i, n = [False], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":                                  # a character class: skip to its end
            j = pattern.find("]", i + 2)
            i = n if j < 0 else j + 1
            continue
        if c == "(":
            stack.append(False)
        elif c == ")" and len(stack) > 1:
            inner = stack.pop()
            after = pattern[i + 1:i + 2]
            if inner and (after in ("*", "+") or pattern.startswith("{", i + 1) and "," in pattern[i + 1:pattern.find("}", i + 1)]):
                return True
            stack[-1] = stack[-1] or inner
        elif c in "*+|?{":
            stack[-1] = True
        i += 1
    return False


@dataclass(frozen=True)
class AdapterConfig:
    """The facts of one PEFT config that the memory model reads; ``knobs`` holds the type's settings
    as (key, value) pairs, lists as tuples and dicts as tuples of pairs in their given order."""

    peft_type: str
    knobs: tuple = ()
    targets: tuple | str | None = None          # target_modules: names, a regex, 'all-linear' or None
    exclude: tuple | str | None = None
    layers_to_transform: tuple | None = None
    layers_pattern: tuple | None = None
    modules_to_save: tuple = ()

    def get(self, key: str, default=None):
        for k, v in self.knobs:
            if k == key:
                return default if v is None else v
        return default

    def to_json(self) -> dict:
        """The config as adapter_config.json keys (what the page and a plan's patch show)."""
        out = {"peft_type": self.peft_type}
        for key, value in self.knobs:
            if value is not None and value != ():
                out[key] = _plain(value)
        for key, value in (("target_modules", self.targets), ("exclude_modules", self.exclude),
                           ("layers_to_transform", self.layers_to_transform), ("layers_pattern", self.layers_pattern),
                           ("modules_to_save", self.modules_to_save)):
            if value:
                out[key] = _plain(value)
        return out

    def is_prompt(self) -> bool:
        return self.peft_type in PROMPT_TYPES or self.peft_type == "ADAPTION_PROMPT"


def _plain(value):
    """Tuples back to JSON lists, tuples of pairs back to objects."""
    if isinstance(value, tuple) and value and all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str)
                                                  for v in value):
        return {k: _plain(v) for k, v in value}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def parse_peft_config(where: str, raw) -> AdapterConfig:
    """An AdapterConfig from the JSON object of adapter_config.json, or InputError naming the field."""
    if isinstance(raw, AdapterConfig):
        return raw
    if not isinstance(raw, dict):
        raise InputError(where, "must be a JSON object (a PEFT adapter_config.json)")
    kind = raw.get("peft_type")
    if not isinstance(kind, str):
        raise InputError(join_path(where, "peft_type"), "is required: one of " + ", ".join(PEFT_TYPES))
    kind = kind.upper()
    if kind not in PEFT_TYPES:
        raise InputError(join_path(where, "peft_type"), f"{show(raw.get('peft_type'))} is not a PeftType of peft 0.21; "
                                                       "known: " + ", ".join(PEFT_TYPES))
    if kind in REFUSED:
        raise InputError(join_path(where, "peft_type"), f"{kind} is not modelled: {REFUSED[kind]}")
    if kind in ("LORA", "ADALORA"):
        for key in _UNMODELLED_LORA:
            if raw.get(key) not in (None, False, {}, []):
                raise InputError(join_path(where, key), f"is not modelled for {kind} (it changes which parameters train "
                                                        "or how they are stored); remove it to estimate plain "
                                                        f"{kind.lower()}")
    knobs = []
    for key, k, default in KNOBS[kind]:
        value = raw.get(key)
        if value is None:
            if key in REQUIRED.get(kind, ()):
                raise InputError(join_path(where, key), f"is required for {kind}")
            knobs.append((key, default))
            continue
        knobs.append((key, _check(join_path(where, key), k, value)))
    for key in REQUIRED.get(kind, ()):
        if raw.get(key) is None:
            raise InputError(join_path(where, key), f"is required for {kind}")
    cfg = AdapterConfig(peft_type=kind, knobs=tuple(knobs), **_targeting(where, kind, raw))
    _check_consistent(where, cfg, raw)
    return cfg


def _targeting(where: str, kind: str, raw: dict) -> dict:
    if kind in PROMPT_TYPES or kind == "ADAPTION_PROMPT":
        return {}
    out = {"targets": _names(join_path(where, "target_modules"), raw.get("target_modules")),
           "exclude": _names(join_path(where, "exclude_modules"), raw.get("exclude_modules"))}
    layers = raw.get("layers_to_transform")
    if layers is not None:
        out["layers_to_transform"] = (_check(join_path(where, "layers_to_transform"), "nat", layers),) \
            if not isinstance(layers, list) else _check(join_path(where, "layers_to_transform"), "ints", layers)
    # layers_pattern and modules_to_save entries are spliced into PEFT's own regexes (tuners_utils.py lines
    # 2363 and 2396), each adding a lazy or greedy .*
    for key in ("layers_pattern", "modules_to_save"):
        given = raw.get(key)
        if given is None:
            continue
        names = _names(join_path(where, key), given)
        names = (names,) if isinstance(names, str) else names
        for i, name in enumerate(names):
            _safe_regex(f"{join_path(where, key)}[{i}]", name, MAX_REGEX_REPEATS - 2)
        out[key] = names
    return out


def _check_consistent(where: str, cfg: AdapterConfig, raw: dict) -> None:
    """PEFT's own refusals (LoraConfig.__post_init__, peft/tuners/lora/config.py lines 1039-1088) and the
    settings that contradict each other."""
    if isinstance(cfg.targets, str) and cfg.targets != "all-linear":
        if cfg.layers_to_transform is not None:
            raise InputError(join_path(where, "layers_to_transform"), "cannot be used when target_modules is a "
                                                                      "regex string (PEFT ignores it there)")
        if cfg.layers_pattern is not None:
            raise InputError(join_path(where, "layers_pattern"), "cannot be used when target_modules is a regex string")
    if cfg.layers_pattern and cfg.layers_to_transform is None:
        raise InputError(join_path(where, "layers_to_transform"), "must be given when layers_pattern is")
    if cfg.get("use_dora") and cfg.get("lora_bias"):
        raise InputError(join_path(where, "lora_bias"), "is not supported together with use_dora (PEFT refuses it)")
    if cfg.peft_type == "OFT" and (cfg.get("r") == 0) == (cfg.get("oft_block_size") == 0):
        raise InputError(join_path(where, "r"), "OFT takes exactly one of r and oft_block_size (the other 0); got "
                                                f"r={cfg.get('r')}, oft_block_size={cfg.get('oft_block_size')}")
    if cfg.peft_type == "BOFT" and (cfg.get("boft_block_size") == 0) == (cfg.get("boft_block_num") == 0):
        raise InputError(join_path(where, "boft_block_size"), "BOFT takes exactly one of boft_block_size and "
                                                              "boft_block_num (the other 0)")
    if cfg.peft_type == "ADALORA" and cfg.get("target_r") > cfg.get("init_r"):
        raise InputError(join_path(where, "target_r"), f"must be at most init_r ({cfg.get('init_r')})")
    if cfg.peft_type == "CARTRIDGE" and cfg.get("num_frozen_tokens") > cfg.get("num_virtual_tokens"):
        raise InputError(join_path(where, "num_frozen_tokens"), "must be at most num_virtual_tokens")


def _names(where: str, value):
    """target_modules and the like: a list of names, or one string (a regex matched against the whole
    module name, peft/utils/other.py match_target_against_key, or the 'all-linear' shorthand)."""
    if value is None:
        return None
    if isinstance(value, str):
        if not 0 < len(value) <= MAX_PATTERN_LEN:
            raise InputError(where, f"must be a regex of 1 to {MAX_PATTERN_LEN} characters")
        if value.lower() == "all-linear":
            return "all-linear"
        _safe_regex(where, value, MAX_REGEX_REPEATS)
        return value
    if not isinstance(value, list) or len(value) > 1024:
        raise InputError(where, "must be a list of module names or a regex string")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not 0 < len(name) <= 200:
            raise InputError(f"{where}[{i}]", f"must be a module name of 1 to 200 characters, got {show(name)}")
    return tuple(value)


def _check(where: str, kind: str, value):
    if kind in ("pos", "nat", "int"):
        lo = {"pos": 1, "nat": 0, "int": -1}[kind]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or not lo <= value <= 10 ** 9:
            what = {"pos": "a positive integer", "nat": "an integer >= 0", "int": "an integer >= -1"}[kind]
            raise InputError(where, f"must be {what}, got {show(value)}")
        return int(value)
    if kind == "num":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1e9:
            raise InputError(where, f"must be a number >= 0, got {show(value)}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise InputError(where, f"must be true or false, got {show(value)}")
        return value
    if kind == "str":
        return str(value).lower() if isinstance(value, (str, bool)) else _bad(where, value, "a string")
    if kind.startswith("choice:"):
        options = kind[7:].split("|")
        if value not in options:
            raise InputError(where, f"must be one of {', '.join(options)}, got {show(value)}")
        return value
    if kind == "names":
        return _names(where, value)
    if kind == "ints":
        if not isinstance(value, list) or len(value) > 1_000_000:
            raise InputError(where, "must be a list of integers")
        return tuple(_check(f"{where}[{i}]", "nat", x) for i, x in enumerate(value))
    if kind == "tokens":
        if isinstance(value, list):
            return _check(where, "ints", value)
        if isinstance(value, dict):
            return tuple((str(k), _check(join_path(where, k), "ints", v)) for k, v in value.items())
        return _bad(where, value, "a list of token ids, or module name -> token ids")
    if kind in ("pattern", "fpattern"):
        if not isinstance(value, dict):
            return _bad(where, value, "an object of module-name pattern -> value")
        item = "pos" if kind == "pattern" else "num"
        for k in value:
            # get_pattern_key matches (.*\.)?(key)$ (peft/utils/other.py line 1527): the key is a regex
            _safe_regex(join_path(where, k), str(k)[:MAX_PATTERN_LEN], MAX_REGEX_REPEATS - 1)
        return tuple((str(k), _check(join_path(where, k), item, v)) for k, v in value.items())
    raise AssertionError(kind)


def _bad(where: str, value, what: str):
    raise InputError(where, f"must be {what}, got {show(value)}")
