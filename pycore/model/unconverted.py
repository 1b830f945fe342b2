"""Modules a quantised checkpoint keeps in 16 bits beyond the usual ones (embeddings, lm_head, norms,
routers): the ``modules_to_not_convert`` / ``ignored_layers`` of an fp8 ``quantization_config`` and the
``ignore`` list of compressed-tensors. vLLM skips a linear whose full name is in the list (vLLM 0.19
model_executor/layers/quantization/fp8.py:161-166 reads ignored_layers, else modules_to_not_convert;
utils/quant_utils.py is_layer_skipped, exact prefix match, fused layers by their shards); transformers
matches a name that contains an entry (quantizers/base.py should_convert_module), so an entry without a
layer index ("self_attn", "shared_expert") applies to every layer.
"""

from __future__ import annotations

import re

from ..errors import InputError

MAX_ENTRIES = 20_000
MAX_ENTRY_CHARS = 300
_INDEXED = re.compile(r"(?:[\w.]{0,80}\.)?layers\.(\d{1,6})\.([\w.]{1,200})")
# our linear's parent module per group (Qwen/Llama/DeepSeek naming)
PARENTS = {"attention": ("self_attn", "linear_attn"), "mlp": ("mlp",), "shared": ("mlp.shared_expert", "mlp.shared_experts"),
           "experts": ("mlp.experts",), "router": ("mlp.gate",)}
FUSED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}


def read_entries(value, at: str) -> tuple:
    """((layer index or -1, module path), ...) of a config's list of module names."""
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_ENTRIES:
        raise InputError(at, f"must be a list of at most {MAX_ENTRIES} module names")
    out = []
    for i, entry in enumerate(value):
        if not isinstance(entry, str) or len(entry) > MAX_ENTRY_CHARS:
            raise InputError(f"{at}[{i}]", f"must be a module name of at most {MAX_ENTRY_CHARS} characters")
        entry = entry[3:] if entry.startswith("re:") else entry        # compressed-tensors regex: read as text
        m = _INDEXED.fullmatch(entry)
        out.append((int(m.group(1)), m.group(2)) if m else (-1, entry))
    return tuple(out)


def _names(group: str, name: str) -> list[str]:
    leaves = FUSED.get(name, (name.split(".")[-1],))
    return [f"{parent}.{leaf}" for parent in PARENTS.get(group, ()) for leaf in leaves] + list(PARENTS.get(group, ()))


def kept_layers(entries: tuple, group: str, name: str, first: int, layers: int) -> int:
    """How many of this linear's ``layers`` layers (from index ``first``) the list keeps in 16 bits."""
    if not entries or group in ("head", "router"):
        return 0
    paths = _names(group, name)
    listed = set()
    for index, path in entries:
        if index < 0:
            if any(path in f"model.layers.0.{p}" for p in paths if "." in p) or path in paths:
                return layers
        elif first <= index < first + layers and path in paths:
            listed.add(index)
    return min(len(listed), layers)
