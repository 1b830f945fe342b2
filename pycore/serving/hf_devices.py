"""transformers' generate over several GPUs and the CPU: ``from_pretrained(device_map="auto",
max_memory=...)`` places the modules (device_map.py), and accelerate's hooks run each module on its
device during generate. What each GPU holds at each moment of generate:

- the weights of the modules placed on it;
- the KV cache of the layers that run on it: a decoder layer's cache is created by ``cache.update``
  on the device its keys are computed on (cache_utils.py DynamicLayer.lazy_initialization @5.25.0);
- one layer's temporaries while its layers run, and the inputs its hook copied in from the previous
  device: the hidden states and the rotary cos/sin (AlignDevicesHook.pre_forward, send_to_device:
  accelerate hooks.py @1.16.0);
- the logits, on the device that runs the head (the last GPU in a balanced map);
- with offload: modules placed on "cpu" or "disk" run on the main device, the first GPU that holds
  weights (big_modeling.py:373-399 @1.16.0: execution_device is main_device for them). Their weights
  are copied in by the hook for the duration of their forward and dropped after (hooks.py
  AlignDevicesHook offload=True), so the main device also holds the largest offloaded module, and the
  KV cache and temporaries of the offloaded layers. The CPU keeps the "cpu" modules' weights
  (the state dict dispatch_model extracts); "disk" modules are read from the offload folder's memory
  maps.
Each GPU also has its CUDA context and its allocator's reserve (training/allocator.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model.breakdown import snapshot_tree
from ..errors import InputError
from ..training.allocator import reserved_bytes
from ..training.timeline import Snapshot
from .device_map import device_of, infer_device_map, module_sizes, parse_max_memory, strategy_memory
from .module_tree import layer_prefix, model_tree, part_names, tied_groups

# A host with no max_memory["cpu"] is taken to hold whatever is offloaded: the answer says how much.
UNBOUNDED_HOST_BYTES = 1 << 60


@dataclass(frozen=True)
class Placement:
    """Where from_pretrained puts each module, and the bytes each device is given."""

    device_map: dict          # module name -> GPU index, "cpu" or "disk" (not cleaned)
    budgets: dict             # max_memory as given (or the default), bytes
    balanced: dict            # max_memory handed to infer_auto_device_map
    layer_devices: tuple      # device of each decoder layer
    loaded_bytes: dict        # module name -> bytes once loaded (the format's full layout)
    gpus: int
    main_device: object       # where offloaded modules run


def default_budgets(gpus: int, gpu_bytes: int, context_bytes: int) -> dict:
    """accelerate's get_max_memory without max_memory: each GPU's free memory once its CUDA context
    exists (torch.tensor(0, device=i), modeling.py:815-818 @1.16.0), and the host."""
    return {**{i: gpu_bytes - context_bytes for i in range(gpus)}, "cpu": UNBOUNDED_HOST_BYTES}


def place(m, fmt, cb: int, kernel: str, strategy: str, budgets: dict, user_set: bool, transformers: tuple) -> Placement:
    tree = model_tree(m, fmt, cb, True)
    balanced = strategy_memory(tree, strategy, budgets, user_set, transformers, bnb=fmt.method.startswith("bnb"))
    dmap = infer_device_map(tree, balanced, tied_groups(m), transformers)
    loaded = module_sizes(model_tree(m, fmt, cb, False, kernel == "marlin"))
    prefix = layer_prefix(m)
    layers = tuple(device_of(dmap, f"{prefix}.{i}") for i in range(m.n_layers))
    on_gpu = sorted({d for d in dmap.values() if isinstance(d, int)})
    gpus = len([k for k in budgets if isinstance(k, int)])
    return Placement(dmap, budgets, balanced, layers, {n: loaded.get(n, 0) for n in dmap}, gpus,
                     on_gpu[0] if on_gpu else "cpu")


def resolve_budgets(s, gpu_bytes: int, context_bytes: int) -> tuple[dict, bool]:
    """(max_memory in bytes, whether the user gave it) from workload.devices and workload.max_memory."""
    if s.max_memory is None:
        return default_budgets(s.devices, gpu_bytes, context_bytes), False
    budgets = parse_max_memory(s.max_memory)
    gpus = len([k for k in budgets if isinstance(k, int)])
    if s.devices > 1 and s.devices != gpus:
        raise InputError("workload.devices", f"is {s.devices} but max_memory names {gpus} GPU(s); give one or the "
                                             "other, or make them agree")
    return budgets, True


def _runs_on(p: Placement, device) -> object:
    return p.main_device if device in ("cpu", "disk") else device


def device_weights(m, p: Placement, gpu: int) -> dict:
    """The weights placed on ``gpu``, by part of the model."""
    names = part_names(m)
    out: dict = {}
    for name, dev in p.device_map.items():
        if dev != gpu or not p.loaded_bytes.get(name):
            continue
        if name.startswith(layer_prefix(m) + "."):
            key = "decoder layers"
        elif name == names["embedding"] or name.startswith(names["embedding"] + "."):
            key = "embedding"
        elif name == names["head"]:
            key = "output head"
        else:
            key = "final norm and other modules"
        out[key] = out.get(key, 0) + p.loaded_bytes[name]
    return out


def offloaded_largest(p: Placement) -> int:
    return max((b for n, b in p.loaded_bytes.items() if p.device_map[n] in ("cpu", "disk")), default=0)


def host_parts(p: Placement) -> dict:
    return {kind: sum(b for n, b in p.loaded_bytes.items() if p.device_map[n] == kind) for kind in ("cpu", "disk")}


def _tokens(snapshot: Snapshot, batch: int, seq: int) -> int:
    return batch * seq if snapshot.phase in ("prefill", "forward") else batch


def device_snapshots(m, p: Placement, gpu: int, snapshots: tuple, batch: int, seq: int, cb: int) -> list:
    """The moments of generate on one GPU, from the whole model's moments on one GPU."""
    names = part_names(m)
    runs = [_runs_on(p, d) for d in p.layer_devices]
    layers_here = sum(1 for d in runs if d == gpu)
    head_here = _runs_on(p, device_of(p.device_map, names["head"])) == gpu
    first_here = _runs_on(p, device_of(p.device_map, names["embedding"])) == gpu
    weights = device_weights(m, p, gpu)
    if gpu == p.main_device and offloaded_largest(p):
        weights["offloaded module copied in by its hook (the largest)"] = offloaded_largest(p)
    out = []
    for snap in snapshots:
        parts = [("weights", weights)]
        for category, items in snap.parts:
            if category == "framework buffers" and layers_here:
                parts.append((category, dict(items)))
            elif category == "KV cache":
                parts.append((category, {k: v * layers_here // m.n_layers for k, v in items.items()}))
            elif category == "temporaries" and layers_here:
                extra = {}
                if not first_here:
                    t = _tokens(snap, batch, seq)
                    extra["inputs copied in by the device hook (hidden states, rotary cos/sin)"] = \
                        cb * t * (m.hidden_size + 2 * m.head_dim)
                parts.append((category, {**dict(items), **extra}))
            elif category == "logits and loss" and head_here:
                parts.append((category, dict(items)))
        out.append(Snapshot(snap.phase, snap.moment, tuple(parts)))
    return out


def layer_ranges(layer_devices: tuple, device) -> list:
    """[[first, last], ...] of the layers placed on ``device``."""
    out: list = []
    for i, d in enumerate(layer_devices):
        if d != device:
            continue
        if out and out[-1][1] == i - 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


def device_answer(m, p: Placement, gpu: int, e, context_bytes: int) -> dict:
    """One GPU's entry of ``per_device``: its layers, weights, peak moment and tree."""
    ctx = e.context
    snaps = device_snapshots(m, p, gpu, e.snapshots, ctx.batch, ctx.seq, ctx.compute_bytes)
    peak = max(snaps, key=lambda s: s.total())
    allocated = peak.total()
    reserved = reserved_bytes(allocated, snaps, ctx)
    tree = snapshot_tree(peak, reserved - allocated, context_bytes)
    kv = sum(sum(items.values()) for cat, items in peak.parts if cat == "KV cache")
    return {"device": gpu, "layers": layer_ranges(p.layer_devices, gpu),
            "layer_count": sum(1 for d in p.layer_devices if d == gpu),
            "weights_bytes": sum(device_weights(m, p, gpu).values()),
            "kv_cache_bytes": kv, "peak_allocated_bytes": allocated, "reserved_bytes": reserved,
            "peak_bytes": tree.bytes, "peak_phase": peak.phase, "peak_moment": peak.moment,
            "budget_bytes": p.budgets.get(gpu, 0), "balanced_budget_bytes": p.balanced.get(gpu, 0),
            "breakdown": tree.to_dict(),
            "phases": [{"phase": s.phase, "moment": s.moment, "bytes": s.total()} for s in snaps]}


def map_listing(m, p: Placement) -> list:
    """The device map as accelerate would print it, grouped: each device's layer ranges and other modules."""
    prefix = layer_prefix(m) + "."
    order = [*range(p.gpus), "cpu", "disk"]
    out = []
    for dev in order:
        mods = [n for n, d in p.device_map.items() if d == dev and not n.startswith(prefix)]
        ranges = layer_ranges(p.layer_devices, dev)
        if mods or ranges or isinstance(dev, int):
            out.append({"device": dev, "layers": ranges, "modules": mods,
                        "bytes": sum(p.loaded_bytes[n] for n, d in p.device_map.items() if d == dev)})
    return out


def bnb_refusal(fmt, p: Placement) -> str:
    """bitsandbytes refuses a map with modules on the CPU or disk (unless everything is on the CPU) without
    llm_int8_enable_fp32_cpu_offload=True (quantizer_bnb_4bit.py:70-80, quantizer_bnb_8bit.py @5.25.0)."""
    values = set(p.device_map.values())
    if not fmt.method.startswith("bnb") or values == {"cpu"} or not values & {"cpu", "disk"}:
        return ""
    return ("Some modules are dispatched on the CPU or the disk. Make sure you have enough GPU RAM to fit the "
            "quantized model. If you want to dispatch the model on the CPU or the disk while keeping these modules "
            "in 32-bit, you need to set `llm_int8_enable_fp32_cpu_offload=True` and pass a custom `device_map` "
            "(transformers' bitsandbytes quantizer)")


def placement_warnings(m, p: Placement) -> list:
    out = []
    host = host_parts(p)
    offloaded = sum(1 for d in p.layer_devices if d in ("cpu", "disk"))
    if offloaded:
        out.append(f"{offloaded} decoder layer(s) offloaded to the CPU or disk run on GPU {p.main_device}: their "
                   "weights are copied over PCIe at every forward, that is for every generated token")
    if host["disk"]:
        out.append("modules are placed on disk: from_pretrained needs offload_folder= (it raises without one)")
    empty = [g for g in range(p.gpus) if not any(d == g for d in p.device_map.values())]
    if empty:
        out.append(f"GPU(s) {', '.join(map(str, empty))} received no weights: the budgets before them held the model")
    return out


def transformers_version(req) -> str:
    """The hf engine's version (workload.version) is transformers'; else framework.transformers."""
    return req.serving.version or req.framework.transformers


def _inputs(req, e):
    from .engines import weight_format
    from ..model.quant_kernels import default_kernel
    from ..versions import version_tuple
    tf = version_tuple(transformers_version(req), "framework.transformers", "a transformers version", "5.17")
    fmt = weight_format(req.serving, req.checkpoint)
    p = e.precision
    kernel = "none" if not fmt.quantised else (p.quant_kernel if p.quant_kernel != "auto" else default_kernel(fmt, tf))
    return tf, fmt, kernel


def device_map_answer(req, e) -> dict:
    """The fields a multi-device answer adds to (or replaces in) the one-GPU result of the hf engine.
    ``e``: the whole model's estimate on one GPU, whose moments are shared out over the devices."""
    s, hw = req.serving, req.hardware
    context = req.framework.context_bytes()
    tf, fmt, kernel = _inputs(req, e)
    budgets, user_set = resolve_budgets(s, hw.memory_bytes, context)
    p = place(e.model, fmt, e.context.compute_bytes, kernel, s.device_map, budgets, user_set, tf)
    per = [device_answer(e.model, p, g, e, context) for g in range(p.gpus)]
    most = max(per, key=lambda d: d["peak_bytes"])
    host = host_parts(p)
    show = lambda d: {str(k): v for k, v in d.items() if v < UNBOUNDED_HOST_BYTES // 2}  # noqa: E731
    refusal = bnb_refusal(fmt, p)
    return {"gpus": p.gpus, "starts": not refusal, "refusal": refusal, "per_device": per,
            "host_bytes": host["cpu"], "disk_bytes": host["disk"],
            "device_map": {"strategy": s.device_map, "max_memory": show(budgets), "max_memory_given": user_set,
                           "balanced_max_memory": show(p.balanced), "main_device": p.main_device,
                           "transformers": transformers_version(req), "map": map_listing(e.model, p)},
            "layout": _layout(p, most),
            "most_loaded_device": most["device"], "device_total_bytes": most["peak_bytes"],
            "peak_allocated_bytes": most["peak_allocated_bytes"], "reserved_bytes": most["reserved_bytes"],
            "model_states_bytes": most["weights_bytes"],
            "peak_phase": most["peak_phase"], "peak_moment": most["peak_moment"], "phases": most["phases"],
            "breakdown": most["breakdown"], "per_gpu": most["breakdown"],
            "fits": not refusal and all(d["peak_bytes"] <= hw.memory_bytes for d in per),
            "headroom_bytes": hw.memory_bytes - most["peak_bytes"],
            "warnings": placement_warnings(e.model, p) + _bit_warnings(s.max_memory)}


def _layout(p: Placement, most: dict) -> dict:
    """The layout line the CLI and the page show: device_map splits the layers over the GPUs, which run one
    after another (a pipeline without micro-batches)."""
    layers = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in most["layers"]) or "none"
    return {"recipe": "device_map", "gpus": p.gpus, "zero_stage": 0,
            "degrees": {"data": 1, "tensor": 1, "pipeline": p.gpus, "context": 1, "expert": 1},
            "most_loaded": {"rank": most["device"],
                            "description": f"GPU {most['device']} with layers {layers} (device_map, one GPU at a time)"}}


def _bit_warnings(text) -> list:
    from .device_map import bit_sizes
    bits = bit_sizes(text) if text else []
    if not bits:
        return []
    return [f"max_memory {', '.join(bits)}: accelerate reads a unit ending in a lower-case b as bits (a byte "
            "count divided by 8); write GB or GiB for bytes"]


MAX_SOLVE_GPUS = 64


def fewest_gpus(req, e, band: dict) -> dict | None:
    """The fewest GPUs of this kind that hold the whole model with device_map (no offload) and fit
    generate's peak on every one, with the max_memory split from_pretrained computes for that map: only
    counts whose answer would say "fits" (the upper edge of the answer's error ``band`` fits,
    accuracy/bands.verdict, as api.hf_generate_result judges the device_map answer)."""
    from dataclasses import replace
    from ..accuracy.bands import verdict

    def answer(n: int) -> dict:
        return device_map_answer(replace(req, serving=replace(req.serving, devices=n, max_memory=None)), e)
    # No count below the one whose cards together hold the weights can keep them all on GPUs: the search
    # starts there (a 671B model on 24 GB cards starts at 55, not 1; each placement walks every module).
    one = answer(1)
    weights = sum(d["weights_bytes"] for d in one["per_device"]) + one["host_bytes"] + one["disk_bytes"]
    floor = max(1, -(-weights // req.hardware.memory_bytes))
    for n in range(floor, MAX_SOLVE_GPUS + 1):
        ans = one if n == 1 else answer(n)
        offloaded = ans["host_bytes"] or ans["disk_bytes"]
        fits = verdict(ans["device_total_bytes"], req.hardware.memory_bytes, band) == "fits"
        if not offloaded and fits and ans["starts"]:
            return {"gpus": n, "device_total_bytes": ans["device_total_bytes"],
                    "per_device_peak_bytes": [d["peak_bytes"] for d in ans["per_device"]],
                    "layers": [d["layers"] for d in ans["per_device"]],
                    "max_memory": {k: v for k, v in ans["device_map"]["balanced_max_memory"].items() if k != "cpu"}}
    return None
