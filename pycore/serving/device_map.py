"""Big-model placement: which GPU, the CPU or the disk holds each module when transformers'
``from_pretrained(..., device_map="auto", max_memory=...)`` loads a model, computed as the libraries
compute it, over a tree of module sizes instead of a model on the meta device.

Ported from (the line numbers are those of the versions named):
- accelerate 1.16.0 ``accelerate/utils/modeling.py``: ``convert_file_size_to_int`` 108-149,
  ``compute_module_sizes`` 675-714, ``get_max_layer_size`` 729-765, ``get_max_memory`` 795-850,
  ``get_module_leaves`` 905-913, ``get_balanced_memory`` 916-1045, ``get_module_size_with_ties``
  1132-1167, ``infer_auto_device_map`` 1278-1583. transformers before 5.0 called these
  (modeling_utils.py ``_get_device_map`` 1299-1370 @4.57.1).
- transformers 5.25.0 ``transformers/integrations/accelerate.py``: from 5.0 transformers keeps its own
  copy. ``get_module_size_with_ties`` 62-95, ``compute_module_sizes`` 146-193 (tied keys not counted,
  quantizers' element sizes), ``get_max_memory`` 204-239 (the CPU's free memory x 0.9 when
  max_memory is not given), ``get_balanced_memory`` 242-337, ``_get_device_map`` 340-379 ("auto" and
  "balanced" balance, "balanced_low_0" keeps GPU 0 light, "sequential" fills GPU 0 first) and
  ``infer_auto_device_map`` 644-951.

What both keep: GPU 0 (and the CPU) always leave room for the largest layer still to place, so that a
layer offloaded to the CPU or disk can be brought in to run; a decoder layer (``_no_split_modules``)
is never split over devices; tied parameters land on the device of the first module that holds one;
the last GPU of a balanced map takes whatever the buffer did not cover.

``get_balanced_memory`` sizes each GPU but the last to total / n + 1.25 x buffer; what the buffer is
changed with the version (``DEVICE_MAP_RULES``).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from ..errors import InputError
from ..versions import Rule

# get_balanced_memory: each GPU but the last takes total / n plus this many times the buffer
# (modeling.py:1022 @accelerate 1.16.0; integrations/accelerate.py:319 @transformers 5.25.0).
BALANCE_BUFFER_FACTOR = 1.25
# With one GPU and no max_memory, 90% of its free memory is used for weights, "10% for the buffer"
# (modeling.py:976 @accelerate 1.16.0; integrations/accelerate.py:292 @transformers 5.25.0).
SINGLE_GPU_SHARE = 0.9
# transformers 5 takes 90% of the CPU's free memory when max_memory is not given
# (integrations/accelerate.py:236-237 @5.25.0).
CPU_SHARE = 0.9
# bitsandbytes 4/8-bit quantizers shrink every device's budget to 90% "for buffers that are created
# during quantization" (quantizers/quantizer_bnb_4bit.py:89-92, quantizer_bnb_8bit.py:83-86 @5.25.0).
BNB_MAX_MEMORY_SHARE = 0.9
STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")

DEVICE_MAP_RULES = (
    Rule("device-map-transformers-copy", "transformers", (5, 0, 0), None,
         "from_pretrained places modules with transformers' own copy of get_balanced_memory and "
         "infer_auto_device_map (tied keys not counted, the CPU budget x 0.9 when max_memory is unset); "
         "before, with accelerate's", "integrations/accelerate.py@5.0.0; modeling_utils.py:1299-1370@4.57.1"),
    Rule("balanced-buffer-largest-layer", "transformers", (5, 14, 0), None,
         "get_balanced_memory's buffer is the largest no-split layer of all, not the first of its class",
         "integrations/accelerate.py get_balanced_memory @5.13.0 vs @5.14.0"),
    Rule("balanced-buffer-biggest-leaf", "transformers", (5, 18, 0), None,
         "get_balanced_memory's buffer is 1.25 x max(largest layer, largest leaf module such as the "
         "embedding), not 1.25 x max(layer, mean leaf module)",
         "integrations/accelerate.py:316-320@5.18.0 vs @5.17.0"),
)
_RULES = {r.name: r for r in DEVICE_MAP_RULES}


def holds(name: str, transformers: tuple) -> bool:
    return _RULES[name].holds(transformers)


@dataclass(frozen=True)
class Tensor:
    """A parameter or buffer held directly by a module, with the bytes the placement counts."""

    name: str
    bytes: int
    buffer: bool = False


@dataclass(frozen=True)
class Module:
    """An nn.Module: its direct tensors and its children in registration order (``named_children``).
    ``no_split``: its class is in the model's ``_no_split_modules`` (a decoder layer)."""

    name: str
    tensors: tuple = ()
    children: tuple = ()
    no_split: bool = False


# ---- max_memory ------------------------------------------------------------------------------

_UNITS = (("GIB", 2 ** 30), ("MIB", 2 ** 20), ("KIB", 2 ** 10), ("GB", 10 ** 9), ("MB", 10 ** 6), ("KB", 10 ** 3))


def size_to_bytes(text: str, where: str) -> int:
    """accelerate's ``convert_file_size_to_int``: "20GiB", "1.5GB", "800MiB" or a whole number of bytes.
    As in accelerate, a lower-case "b" (``"20Gb"``) means bits: the bytes are divided by 8."""
    s = text.strip()
    if s.isdigit():
        return int(s)
    for unit, scale in _UNITS:
        if s.upper().endswith(unit) and len(s) > len(unit):
            number = s[: -len(unit)].strip()
            try:
                value = float(number)
            except ValueError:
                break
            if not value >= 0 or value == float("inf"):
                break
            n = int(value * scale)
            return n // 8 if unit in ("GB", "MB", "KB") and s.endswith("b") else n
        if s.upper().endswith(unit):
            break
    raise InputError(where, f"{text.strip()[:40]!r} is not a size: give a number and a unit such as 20GiB, 1.5GB "
                            "or 800MiB (GiB = 2^30 bytes, GB = 10^9 bytes), or a whole number of bytes")


def bit_sizes(text: str) -> list:
    """The items of a max_memory string whose unit ends in a lower-case b (Gb, Mb, Kb): bits to accelerate."""
    out = []
    for item in text.split(","):
        size = item.partition(":")[2].strip()
        if size[-2:].upper() in ("GB", "MB", "KB") and size.endswith("b"):
            out.append(item.strip())
    return out


def parse_max_memory(text: str, where: str = "workload.max_memory") -> dict:
    """``"0:20GiB,1:20GiB,cpu:120GiB"`` as accelerate's ``get_max_memory`` orders it: the GPUs by index,
    then "cpu", then "disk"."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(where, "give device:size pairs separated by commas, such as 0:20GiB,1:20GiB,cpu:120GiB")
    out: dict = {}
    for item in text.split(","):
        key, sep, size = item.partition(":")
        key = key.strip().lower()
        if not sep:
            raise InputError(where, f"{item.strip()[:40]!r} has no ':'; write each device as device:size, such as "
                                    "0:20GiB or cpu:120GiB")
        if key.isdigit():
            device = int(key)
            if device > 1023:
                raise InputError(where, f"GPU index {device} is too large")
        elif key in ("cpu", "disk"):
            device = key
        else:
            raise InputError(where, f"device {key[:20]!r} is not recognised: use GPU indices (0, 1, ...), cpu "
                                    "and disk, as accelerate does")
        if device in out:
            raise InputError(where, f"device {key} is given twice")
        out[device] = size_to_bytes(size, where)
    gpus = sorted(k for k in out if isinstance(k, int))
    if not gpus:
        raise InputError(where, "names no GPU: give at least one GPU index, such as 0:20GiB")
    if gpus != list(range(len(gpus))):
        raise InputError(where, f"GPU indices must be 0 to {len(gpus) - 1} without gaps, got {gpus}")
    return {k: out[k] for k in gpus + [d for d in ("cpu", "disk") if d in out]}


# ---- module sizes ----------------------------------------------------------------------------

def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _walk(mod: Module, prefix: str = ""):
    """(dotted name, module) of ``mod`` and every module under it, parents before their children."""
    yield prefix, mod
    for child in mod.children:
        yield from _walk(child, _join(prefix, child.name))


def module_sizes(root: Module) -> dict:
    """Bytes of every module and tensor by dotted name ("" is the model), as ``compute_module_sizes``
    with ``only_modules=False``: each tensor counts towards its name and every prefix."""
    sizes: dict = {}
    for prefix, mod in _walk(root):
        for t in mod.tensors:
            parts = _join(prefix, t.name).split(".")
            for i in range(len(parts) + 1):
                key = ".".join(parts[:i])
                sizes[key] = sizes.get(key, 0) + t.bytes
    return sizes


def leaf_module_sizes(root: Module) -> dict:
    """Modules that hold tensors directly, with those tensors' bytes (transformers' second return value)."""
    return {prefix: sum(t.bytes for t in mod.tensors) for prefix, mod in _walk(root) if mod.tensors and prefix}


def _module_leaves(sizes: dict) -> list:
    """accelerate's ``get_module_leaves``: names without a child name in ``sizes``."""
    children: dict = {}
    for name in sizes:
        if name == "" or "." not in name:
            continue
        parent = name.rsplit(".", 1)[0]
        children[parent] = children.get(parent, 0) + 1
    return [n for n in sizes if children.get(n, 0) == 0 and n != ""]


def _named_modules(root: Module):
    stack = [("", root)]
    while stack:
        name, mod = stack.pop(0)
        yield name, mod
        stack = [(_join(name, c.name), c) for c in mod.children] + stack


def _direct(mod: Module, prefix: str, buffers: bool) -> list:
    """named_parameters(recurse=False) + named_children() (+ named_buffers(recurse=False))."""
    items = [(_join(prefix, t.name), t) for t in mod.tensors if not t.buffer]
    items += [(_join(prefix, c.name), c) for c in mod.children]
    if buffers:
        items += [(_join(prefix, t.name), t) for t in mod.tensors if t.buffer]
    return items


def max_layer_size(items: list, sizes: dict) -> tuple[int, list]:
    """``get_max_layer_size``: the largest module that has no children or is not split."""
    best, names = 0, []
    todo = list(items)
    while todo:
        name, mod = todo.pop(0)
        kids = list(mod.children) if isinstance(mod, Module) else []
        if not kids or mod.no_split:
            size = sizes.get(name, 0)
            if size > best:
                best, names = size, [name]
            elif size == best:
                names.append(name)
        else:
            todo = [(_join(name, c.name), c) for c in kids] + todo
    return best, names


# ---- get_balanced_memory ---------------------------------------------------------------------

def _balance_buffer(root: Module, sizes: dict, transformers: tuple) -> int:
    """What each GPU but the last gets beyond total / n (before the 1.25 factor)."""
    layers = [sizes.get(name, 0) for name, mod in _named_modules(root) if name and mod.no_split]
    if not layers:
        no_split = 0
    elif holds("device-map-transformers-copy", transformers) and holds("balanced-buffer-largest-layer", transformers):
        no_split = max(layers)
    else:
        no_split = layers[0]          # the first module of the class in module_sizes' order
    if holds("device-map-transformers-copy", transformers):
        leaves = list(leaf_module_sizes(root).values())
        if holds("balanced-buffer-biggest-leaf", transformers):
            leaf = max(leaves, default=0)
        else:
            leaf = int(sum(leaves) / max(len(leaves), 1))
    else:
        # accelerate: drop the tensors (the first leaves), then average the modules left as leaves
        first = set(_module_leaves(sizes))
        modules = {n: v for n, v in sizes.items() if n not in first}
        leaves = _module_leaves(modules)
        leaf = int(sum(modules[n] for n in leaves) / max(len(leaves), 1))
    return max(no_split, leaf)


def balanced_memory(root: Module, max_memory: dict, user_set: bool, low_zero: bool = False,
                    transformers: tuple = (5, 25, 0)) -> dict:
    """``get_balanced_memory``: each GPU but the last capped at total / n + 1.25 x buffer; GPU 0 at what
    the others leave with ``low_zero`` ("balanced_low_0"). Budgets are floored to whole bytes, which
    keeps every comparison with a whole number of bytes as it was."""
    max_memory = dict(max_memory)
    gpus = sorted(k for k, v in max_memory.items() if isinstance(k, int) and v > 0)
    if not gpus:
        return max_memory
    if len(gpus) == 1:
        low_zero = False
        if not user_set:
            max_memory[gpus[0]] = int(max_memory[gpus[0]] * SINGLE_GPU_SHARE)
    sizes = module_sizes(root)
    total = sizes.get("", 0)
    per_gpu = total // (len(gpus) - 1 if low_zero else len(gpus))
    per_gpu += int(BALANCE_BUFFER_FACTOR * _balance_buffer(root, sizes, transformers))
    for idx in gpus[:-1]:
        max_memory[idx] = min(max_memory[0] if low_zero and idx == 0 else per_gpu, max_memory[idx])
    if low_zero:
        # transformers sums range(1, n); accelerate 1.16 the listed GPUs but 0: the same for 0..n-1
        max_memory[0] = min(max(0, total - sum(max_memory[i] for i in gpus[1:])), max_memory[0])
    return max_memory


def strategy_memory(root: Module, strategy: str, max_memory: dict, user_set: bool, transformers: tuple,
                    bnb: bool = False) -> dict:
    """The max_memory that ``_get_device_map`` hands to ``infer_auto_device_map`` for a strategy."""
    if strategy not in STRATEGIES:
        raise InputError("workload.device_map", f"must be one of {', '.join(STRATEGIES)}")
    if strategy == "sequential":
        out = dict(max_memory)
    else:
        out = balanced_memory(root, max_memory, user_set, strategy == "balanced_low_0", transformers)
    if bnb:
        out = {k: int(v * BNB_MAX_MEMORY_SHARE) for k, v in out.items()}
    return out


# ---- infer_auto_device_map -------------------------------------------------------------------

def _size_with_ties(tied_params: list, size: int, sizes: dict, todo: list, tf_copy: bool) -> tuple[int, list]:
    """``get_module_size_with_ties``: the module plus the not-yet-placed modules holding its tied tensors."""
    names: list = []
    for p in tied_params:
        if tf_copy:
            hits = [n for n, _ in todo if p.startswith(n + ".")]
        else:
            hits = [n for n, _ in todo if p == n or p.startswith(n + ".")]
        if not hits:
            continue
        if tf_copy:
            if hits[0] not in names:
                names.append(hits[0])
                size += sizes.get(hits[0], 0)
        else:
            names.append(hits[0])
            size += sizes.get(hits[0], 0) - sizes.get(p, 0)
    return size, names


def _tied_outside(name: str, tied: tuple) -> list:
    """Tensors tied to one inside ``name`` but themselves outside it."""
    groups = [g for g in tied if any(name + "." in k + "." for k in g) and not all(name + "." in k + "." for k in g)]
    return [p for g in groups for p in g if name + "." not in p + "."]


def infer_device_map(root: Module, max_memory: dict, tied: tuple = (), transformers: tuple = (5, 25, 0)) -> dict:
    """``infer_auto_device_map`` (not cleaned): module or tensor name -> GPU index, "cpu" or "disk".
    ``max_memory``: the budgets in placement order; ``tied``: groups of tied tensor names."""
    tf_copy = holds("device-map-transformers-copy", transformers)
    devices = list(max_memory) + ([] if "disk" in max_memory else ["disk"])
    gpus = [d for d in devices if d not in ("cpu", "disk")]
    main = [gpus[0], "cpu"] if gpus else ["cpu"]
    sizes = module_sizes(root)
    todo = _direct(root, "", buffers=True)
    placed: "OrderedDict[str, object]" = OrderedDict()
    used = {d: 0 for d in devices}
    current = 0
    layer_max, layer_names = max_layer_size(todo, sizes)
    while todo:
        name, mod = todo.pop(0)
        layer_names = [n for n in layer_names if n != name and not n.startswith(name + ".")]
        if not layer_names:
            layer_max, layer_names = max_layer_size([x for x in todo if isinstance(x[1], Module)], sizes)
        size = sizes.get(name, 0)
        tied_params = _tied_outside(name, tied)
        device = devices[current]
        limit = max_memory[device] if device != "disk" else None
        reserved = 0
        if device in main:
            limit, reserved = limit - layer_max, layer_max
        with_ties, tied_names = _size_with_ties(tied_params, size, sizes, todo, tf_copy)
        if limit is None or used[device] + with_ties <= limit:
            used[device] += with_ties
            placed[name] = device
            for t in tied_names:
                todo = [x for x in todo if x[0] != t]
                placed[t] = device
            continue
        if tied_params and used[device] + size <= limit:
            split = _split_tied(name, mod, tied_names, todo)
            if split is not None:
                todo = split
                layer_max, layer_names = max_layer_size([x for x in todo if isinstance(x[1], Module)], sizes)
                continue
            if not tf_copy and used[device] + size < limit:
                used[device] += reserved          # accelerate moves on without splitting the module itself
                current += 1
                todo = [(name, mod)] + todo
                continue
        if isinstance(mod, Module) and mod.children and not mod.no_split:
            todo = _direct(mod, name, buffers=False) + todo
            layer_max, layer_names = max_layer_size([x for x in todo if isinstance(x[1], Module)], sizes)
            continue
        used[device] += reserved
        current += 1
        todo = [(name, mod)] + todo
    return placed


def _split_tied(name: str, mod, tied_names: list, todo: list):
    """Replace the first splittable tied module by its children, the current module first again."""
    for t in tied_names:
        idx = next(i for i, (n, _) in enumerate(todo) if n == t)
        tmod = todo[idx][1]
        if not isinstance(tmod, Module) or not tmod.children or tmod.no_split:
            continue
        return [(name, mod)] + todo[:idx] + _direct(tmod, t, buffers=False) + todo[idx + 1:]
    return None


def device_of(device_map: dict, name: str):
    """The device of a module or tensor from a (possibly cleaned) map: its own entry or its nearest
    ancestor's, as accelerate's hooks resolve it."""
    while True:
        if name in device_map:
            return device_map[name]
        if not name:
            return None
        name = name.rsplit(".", 1)[0] if "." in name else ""
