"""Trainable parameters of each PEFT adapter type, per adapted module, as peft 0.21.2 creates them.

Each function reads the ``update_layer`` of its tuner (peft/tuners/<type>/layer.py at 0.21.2, the lines
cited) for an nn.Linear of ``in_features`` x ``out_features``; Conv1D (GPT-2) has the same shapes. The
integration tests compare every type's total with ``get_peft_model`` on small models.
"""

from __future__ import annotations

from math import ceil

from ..errors import InputError
from .peft_config import AdapterConfig
from .peft_targets import Module, pattern_value


def _rank(cfg: AdapterConfig, md: Module, key: str = "r", pattern: str = "rank_pattern") -> int:
    return pattern_value(cfg.get(pattern), md.path, cfg.get(key))


def lora(cfg, md, where):
    """lora/layer.py LoraLayer.update_layer: lora_A r x in, lora_B out x r; DoRA's magnitude is one
    value per output (lora/dora.py DoraLinearLayer); lora_bias gives lora_B a bias."""
    r = _rank(cfg, md)
    n = r * (md.in_features + md.out_features)
    if cfg.get("use_dora"):
        n += md.out_features
    if cfg.get("lora_bias"):
        n += md.out_features
    return n


def adalora(cfg, md, where):
    """adalora/layer.py lines 69-73: lora_A init_r x in, lora_E init_r x 1, lora_B out x init_r (ranknum is frozen)."""
    r = cfg.get("init_r")
    return r * (md.in_features + md.out_features + 1)


def loha(cfg, md, where):
    """loha/layer.py lines 67-71: two Hadamard factors, each (out x r) @ (r x in)."""
    return 2 * _rank(cfg, md) * (md.in_features + md.out_features)


def factorization(dimension: int, factor: int = -1) -> tuple[int, int]:
    """lokr/layer.py lines 440-489, as written there."""
    if factor > 0 and dimension % factor == 0:
        return factor, dimension // factor
    if factor == -1:
        factor = dimension
    m, n = 1, dimension
    length = m + n
    while m < n:
        new_m = m + 1
        while dimension % new_m != 0:
            new_m += 1
        new_n = dimension // new_m
        if new_m + new_n > length or new_m > factor:
            break
        m, n = new_m, new_n
    if m > n:
        n, m = m, n
    return m, n


def lokr(cfg, md, where):
    """lokr/layer.py lines 196-202 and 75-109: W = kron(w1, w2) with out = a*c, in = b*d; w1 (a x c) is
    full unless decompose_both and r is small, w2 (b x d) is full unless r < max(b, d) / 2."""
    r, factor = _rank(cfg, md), cfg.get("decompose_factor")
    in_m, in_n = factorization(md.in_features, factor)
    out_l, out_k = factorization(md.out_features, factor)
    use_w1 = not (cfg.get("decompose_both") and r < max(out_l, in_m) / 2)
    use_w2 = not (r < max(out_k, in_n) / 2)
    w1 = out_l * in_m if use_w1 else r * (out_l + in_m)
    w2 = out_k * in_n if use_w2 else r * (out_k + in_n)
    return w1 + w2


def _adjust(in_features: int, params: int) -> int:
    """oft/layer.py lines 490-508: the nearest divisor of in_features."""
    if params >= in_features:
        return in_features
    higher = params
    while higher <= in_features and in_features % higher != 0:
        higher += 1
    lower = params
    while lower > 1 and in_features % lower != 0:
        lower -= 1
    return lower if params - lower <= higher - params else higher


def oft_blocks(cfg, md) -> tuple[int, int]:
    """(blocks, block size) as oft/layer.py lines 421-437 resolve r and oft_block_size."""
    r, bs = cfg.get("r"), cfg.get("oft_block_size")
    if r == 0:
        if md.in_features % bs or bs > md.in_features:
            bs = _adjust(md.in_features, bs)
        return md.in_features // bs, bs
    if md.in_features % r or r > md.in_features:
        r = _adjust(md.in_features, r)
    return r, md.in_features // r


def oft(cfg, md, where):
    """oft/layer.py lines 439-449: one skew-symmetric block of bs(bs-1)/2 values per block (one shared
    with block_share)."""
    blocks, bs = oft_blocks(cfg, md)
    return (1 if cfg.get("block_share") else blocks) * bs * (bs - 1) // 2


def boft(cfg, md, where):
    """boft/layer.py lines 300-367: boft_R (factor, blocks, bs, bs) and boft_s (out x 1). The factor is
    the config's on a GPU with the fbd CUDA extension; without it peft uses 1 (lines 278-283)."""
    bs, num, factor = cfg.get("boft_block_size"), cfg.get("boft_block_num"), cfg.get("boft_n_butterfly_factor")
    if bs == 0:
        if md.in_features % num:
            raise InputError(where + ".boft_block_num", f"must divide in_features ({md.in_features}) of {md.path}")
        bs = md.in_features // num
    elif md.in_features % bs:
        raise InputError(where + ".boft_block_size", f"must divide in_features ({md.in_features}) of {md.path}")
    num = md.in_features // bs
    return factor * num * bs * bs + md.out_features


def ia3(cfg, md, where):
    """ia3/layer.py lines 56-66: one scale per input for feed-forward modules, per output otherwise."""
    ff = cfg.get("feedforward_modules") or ()
    if isinstance(ff, str):
        import re
        is_ff = re.fullmatch(ff, md.path) is not None
    else:
        is_ff = any(md.path.endswith(k) for k in ff)
    return md.in_features if is_ff else md.out_features


def vera(cfg, md, where):
    """vera/layer.py lines 89-90: lambda_b (out) and lambda_d (r); vera_A/B are shared frozen buffers."""
    return md.out_features + cfg.get("r")


def pvera(cfg, md, where):
    """pvera/layer.py lines 107-108: lambda_b (out) and lambda_d (2r)."""
    return md.out_features + 2 * cfg.get("r")


def fourier(cfg, md, where):
    """fourierft/layer.py line 81, waveft/layer.py line 109: n_frequency spectrum entries per module."""
    n = pattern_value(cfg.get("n_frequency_pattern"), md.path, cfg.get("n_frequency"))
    if n > md.in_features * md.out_features:
        raise InputError(where + ".n_frequency", f"{n} is more than in x out ({md.in_features * md.out_features}) "
                                                 f"of {md.path}")
    return n


def hra(cfg, md, where):
    """hra/layer.py line 81: hra_u, in x r."""
    return md.in_features * cfg.get("r")


def hira(cfg, md, where):
    """hira/layer.py lines 139-140: hira_A r x in, hira_B out x r."""
    return _rank(cfg, md) * (md.in_features + md.out_features)


def shira(cfg, md, where):
    """shira/layer.py lines 96-110: r x (in + out) sparse entries, at most in x out."""
    n = cfg.get("r") * (md.in_features + md.out_features)
    if n > md.in_features * md.out_features:
        raise InputError(where + ".r", f"gives {n:,} entries, more than {md.path} has ({md.in_features * md.out_features:,})")
    return n


def c3a(cfg, md, where):
    """c3a/layer.py lines 60-88: c3a_kernel (out/b, in/b, b), always fp32."""
    b = pattern_value(cfg.get("block_size_pattern"), md.path, cfg.get("block_size"))
    if md.in_features % b or md.out_features % b:
        raise InputError(where + ".block_size", f"{b} must divide in and out features ({md.in_features}, "
                                                f"{md.out_features}) of {md.path}")
    return md.out_features * md.in_features // b


def delora(cfg, md, where):
    """delora/layer.py lines 112-114: delora_A r x in, delora_B out x r, and delora_lambda (1)."""
    return _rank(cfg, md) * (md.in_features + md.out_features) + 1


def gralora(cfg, md, where):
    """gralora/layer.py lines 96-135: k x k sub-blocks of rank r (r x in in all) and an optional hybrid LoRA."""
    k = cfg.get("gralora_k")
    if md.in_features % k or md.out_features % k:
        raise InputError(where + ".gralora_k", f"{k} must divide in and out features of {md.path}")
    return (cfg.get("r") + cfg.get("hybrid_r")) * (md.in_features + md.out_features)


def miss(cfg, md, where):
    """miss/layer.py lines 93-123: miss_block r x out ('bat': out/r x r x r, the same count; 'mini': r x mini_r)."""
    r, init = cfg.get("r"), cfg.get("init_weights")
    if r > md.in_features:
        raise InputError(where + ".r", f"must be at most in_features ({md.in_features}) of {md.path}")
    if init == "mini":
        return r * cfg.get("mini_r")
    return r * md.out_features


def randlora(cfg, md, where):
    """randlora/layer.py lines 119-123: lambda r x bases and gamma bases x min(in, out), bases = ceil(min / r)."""
    r, low = cfg.get("r"), min(md.in_features, md.out_features)
    bases = ceil(low / r)
    return r * bases + bases * low


def road(cfg, md, where):
    """road/layer.py lines 94-108: theta and alpha of out/2, out or 2 x out (road_1, _2, _4)."""
    if md.out_features % cfg.get("group_size"):
        raise InputError(where + ".group_size", f"must divide out_features ({md.out_features}) of {md.path}")
    size = {"road_1": md.out_features // 2, "road_2": md.out_features, "road_4": 2 * md.out_features}[cfg.get("variant")]
    return 2 * size


def vblora(cfg, md, where):
    """vblora/layer.py lines 99-103: logits_A r x in/L x N and logits_B out/L x r x N (the bank is shared)."""
    L, N, r = cfg.get("vector_length"), cfg.get("num_vectors"), cfg.get("r")
    if md.in_features % L or md.out_features % L:
        raise InputError(where + ".vector_length", f"{L} must divide in and out features of {md.path}")
    return r * N * (md.in_features + md.out_features) // L


def peanut(cfg, md, where):
    """peanut/layer.py lines 85-89: A (r x out), depth encoders and decoders (r x r), B (out x r)."""
    r = cfg.get("r")
    return 2 * r * md.out_features + 2 * cfg.get("depth") * r * r


def deft(cfg, md, where):
    """deft/layer.py lines 100-118: P out x r' and, unless para, R r' x in, with r' = min(r, out)."""
    r = min(cfg.get("r"), md.out_features)
    return md.out_features * r + (0 if cfg.get("para") else r * md.in_features)


def poly(cfg, md, where):
    """poly/layer.py lines 64-80 and router.py: A and B per split and skill, and a router of n_tasks x
    (n_splits x n_skills) logits."""
    skills, splits = cfg.get("n_skills"), cfg.get("n_splits")
    return skills * cfg.get("r") * (md.in_features + md.out_features) + cfg.get("n_tasks") * splits * skills


def glora(cfg, md, where):
    """glora/layer.py lines 136-175: A and B paths (LoRA: Xd out x r + Xu r x in; vector: out; constant: 1);
    C, D and E only when the base layer has a bias."""
    r, o, i = cfg.get("r"), md.out_features, md.in_features
    n = 2 * {"lora": r * (o + i), "vector": o, "constant": 1, "none": 0}[cfg.get("config_A_B")]
    if md.bias:
        n += {"lora": r * (i + 1), "vector": i, "none": 0}[cfg.get("config_C")]
        n += 2 * {"vector": o, "constant": 1, "none": 0}[cfg.get("config_D_E")]
    return n


def beft(cfg, md, where):
    """beft/layer.py lines 54-55: one bias of out_features."""
    return md.out_features


def ln_tuning(cfg, md, where):
    """ln_tuning/layer.py: a trainable copy of the whole targeted module."""
    return md.params()


PER_MODULE = {
    "LORA": lora, "ADALORA": adalora, "LOHA": loha, "LOKR": lokr, "OFT": oft, "BOFT": boft, "IA3": ia3,
    "VERA": vera, "PVERA": pvera, "FOURIERFT": fourier, "WAVEFT": fourier, "HRA": hra, "HIRA": hira,
    "SHIRA": shira, "C3A": c3a, "DELORA": delora, "GRALORA": gralora, "MISS": miss, "RANDLORA": randlora,
    "ROAD": road, "VBLORA": vblora, "PEANUT": peanut, "DEFT": deft, "POLY": poly, "GLORA": glora,
    "BEFT": beft, "LN_TUNING": ln_tuning, "LILY": None, "UNILORA": None, "TRAINABLE_TOKENS": None,
}


def shared_params(cfg: AdapterConfig, mods: tuple, where: str, targets) -> int:
    """Parameters shared across the adapted modules."""
    t = cfg.peft_type
    if t == "VBLORA":
        return cfg.get("num_vectors") * cfg.get("vector_length")       # vblora/model.py: the vector bank
    if t == "UNILORA":
        return cfg.get("theta_d_length")                               # unilora/model.py: theta_d
    if t == "LILY":
        return _lily(cfg, mods, where, targets)
    return 0


def _lily(cfg: AdapterConfig, mods: tuple, where: str, targets) -> int:
    """lily/layer.py lines 87-91 and lily/model.py lines 96-165: per (target suffix, shape) group one B
    (num_B x r by out), one A (r x in) per stride_A consecutive layers, and a router (r x num_B) per module."""
    if not isinstance(targets, tuple):
        raise InputError(where + ".target_modules", "LILY groups modules by the suffixes listed in "
                                                    "target_modules; give a list of names")
    r, num_b, stride = cfg.get("r"), cfg.get("num_B"), cfg.get("stride_A")
    groups: dict = {}
    for md in mods:
        suffix = next((s for s in targets if md.path.endswith(s)), md.path)
        groups.setdefault((suffix, md.in_features, md.out_features), []).append(md)
    n = 0
    for (_, i, o), members in groups.items():
        n += num_b * r * o + ceil(len(members) / stride) * r * i + len(members) * r * num_b
    return n
