"""A result as a Markdown table, and a request as the page's link (``python -m pycore ... --url``) and as the command line ("Copy as
command" on the page). Both go through the request: CLI flags -> request -> link -> the page's
request, and the page's request -> command -> the same request (tests/test_links.py and
tests/browser/links.test.mjs check the round trips).

``URL_PARAMS`` is the page's table too (catalog.json request.url_params, read by web/state.js); the serving
fields keep their own names in links. ``FLAGS`` is the command line's (pycore/cli/args.py).
"""

from __future__ import annotations

import base64
import shlex
import zlib
from urllib.parse import urlencode

from .errors import InputError
from .schema import at_path

URL_PARAMS = {
    "mode": "workload.mode", "batch": "workload.batch_size", "seq": "workload.seq_len", "new": "workload.new_tokens",
    "w": "precision.weights", "amp": "precision.autocast", "act": "precision.activations", "kv": "precision.kv_cache",
    "opt": "workload.optimizer", "attn": "workload.attention", "ckpt": "workload.gradient_checkpointing",
    "rank": "workload.lora.rank", "targets": "workload.lora.targets", "head": "workload.head",
    "labels": "workload.num_labels", "cache": "workload.cache_implementation", "qf": "precision.quant_format",
    "qk": "precision.quant_kernel", "torch": "framework.torch", "tf": "framework.transformers",
    "recipe": "parallelism.recipe", "dp": "parallelism.data_parallel", "tp": "parallelism.tensor_parallel",
    "pp": "parallelism.pipeline_parallel", "vpp": "parallelism.virtual_stages", "cp": "parallelism.context_parallel",
    "ep": "parallelism.expert_parallel", "sp": "parallelism.sequence_parallel", "zero": "parallelism.zero_stage",
    "ooff": "parallelism.offload_optimizer", "poff": "parallelism.offload_params",
    "ga": "parallelism.gradient_accumulation", "rc": "parallelism.recompute", "gb": "plan.global_batch",
    "mem": "gpu.memory_gib",
    "loss": "workload.loss_kernel", "liger": "workload.liger_kernels", "compile": "workload.torch_compile",
    "aoff": "workload.activation_offload", "pack": "workload.packing", "nf4": "workload.peft_nf4_base",
    "peft": "workload.peft_config",
    "img": "workload.images_per_sample", "imgh": "workload.image_height", "imgw": "workload.image_width",
}
PAGE_DEFAULT_MODEL = "llama-3.1-8b"     # web/state.js PAGE_DEFAULTS.model

# request path -> command-line flag (a flag without a value for a boolean)
FLAGS = {
    "workload.mode": "--mode", "workload.batch_size": "--batch", "workload.seq_len": "--seq",
    "workload.new_tokens": "--new-tokens", "precision.weights": "--weights", "precision.autocast": "--autocast",
    "precision.activations": "--activations", "precision.kv_cache": "--kv-cache", "workload.optimizer": "--optimizer",
    "workload.attention": "--attention", "workload.gradient_checkpointing": "--checkpointing",
    "workload.lora.rank": "--lora-rank", "workload.lora.alpha": "--lora-alpha", "workload.lora.targets": "--lora-targets",
    "workload.head": "--head", "workload.num_labels": "--num-labels",
    "workload.cache_implementation": "--cache-implementation", "precision.quant_format": "--quant-format",
    "precision.quant_kernel": "--quant-kernel", "framework.torch": "--torch-version",
    "framework.transformers": "--transformers-version", "framework.peft": "--peft-version",
    "parallelism.sequence_parallel": "--sp",
    "workload.loss_kernel": "--loss-kernel", "workload.liger_kernels": "--liger-kernels",
    "workload.torch_compile": "--compile", "workload.activation_offload": "--activation-offload",
    "workload.packing": "--packing", "workload.peft_nf4_base": "--peft-nf4-base",
    "workload.images_per_sample": "--images",
}
_LAYOUT = ("recipe", "--recipe"), ("data_parallel", "--dp"), ("tensor_parallel", "--tp"), \
    ("pipeline_parallel", "--pp"), ("virtual_stages", "--vpp"), ("context_parallel", "--cp"), \
    ("expert_parallel", "--ep"), ("zero_stage", "--zero"), ("offload_optimizer", "--offload-optimizer"), \
    ("offload_params", "--offload-params"), ("micro_batches", "--micro-batches"), \
    ("gradient_accumulation", "--grad-accum"), ("recompute", "--recompute"), ("recompute_layers", "--recompute-layers"), \
    ("gpus_per_node", "--gpus-per-node")
FLAGS.update({f"parallelism.{name}": flag for name, flag in _LAYOUT})


def _fields() -> dict:
    from .request import request_schema
    return request_schema()["fields"]




def _serving_paths() -> dict:
    """Serving field name -> path, for the fields only serving has (the page's serve parameters)."""
    return {path[len("workload."):]: path for path, f in _fields().items()
            if path.startswith("workload.") and f.get("modes") == ["serve"]}


def _text(value) -> str:
    if value is True:
        return "1"
    if value is False:
        return "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, dict):                 # a PEFT adapter config travels as its JSON text
        import json
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def compress_config(text: str) -> str:
    """The page's ``cfg`` value: raw deflate, base64url without padding (web/state.js compressConfig)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = c.compress(text.encode("utf-8")) + c.flush()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def to_query(req: dict) -> str:
    """The page's query string for a request: the values that differ from the defaults."""
    fields = _fields()
    q = []
    model = req.get("model")
    if isinstance(req.get("hf_config"), (str, dict)):
        import json
        text = req["hf_config"] if isinstance(req["hf_config"], str) else json.dumps(req["hf_config"])
        q.append(("cfg", compress_config(text)))
    elif isinstance(model, dict):
        raise InputError("model", "a link carries a catalog id or a config.json, not a model given by its size")
    elif model and model != PAGE_DEFAULT_MODEL:
        q.append(("model", model))
    serving = (req.get("workload") or {}).get("mode") == "serve"
    params = dict(URL_PARAMS)
    if serving:
        params.update(_serving_paths())
    for param, path in params.items():
        if param == "mem":
            continue
        value = at_path(req, path)
        f = fields.get(path, {})
        if value is None or value == f.get("default"):
            continue
        if path == "precision.weights" and at_path(req, "precision.autocast") and value == "fp32":
            continue                              # mixed precision: the page sets fp32 itself
        q.append((param, _text(value)))
    gpu = req.get("gpu")
    if isinstance(gpu, dict) and gpu.get("memory_gib") is not None:
        q.append(("mem", _text(gpu["memory_gib"])))
    elif isinstance(gpu, str):
        from .request import DEFAULT_GPU
        if gpu != DEFAULT_GPU:
            q.append(("gpu", gpu))
    return urlencode(q, safe=",")


def to_url(req: dict, base: str) -> str:
    query = to_query(req)
    return base + ("?" + query if query else "")


def to_command(req: dict) -> str:
    """The command line that builds this request (``python -m pycore estimate|serve ...``)."""
    fields = _fields()
    workload = req.get("workload") or {}
    serving = workload.get("mode") == "serve"
    args = ["python", "-m", "pycore", "serve" if serving else "estimate"]
    model = req.get("model")
    if req.get("hf_config") is not None:
        args += ["--hf-config", "config.json"]            # the pasted config, saved beside the command
    elif isinstance(model, dict) and "parameters" in model:
        args += ["--params", _text(model["parameters"])]
        if model.get("largest_layer_parameters") is not None:
            args += ["--largest-layer-params", _text(model["largest_layer_parameters"])]
    elif isinstance(model, dict):
        raise InputError("model", "the command line takes a catalog id, a config.json or a parameter count, "
                                  "not a model given by its dimensions")
    elif model:
        args += ["--model", model]
    if serving:
        for name, path in _serving_paths().items():
            value = workload.get(name)
            if value is None or value == fields[path].get("default"):
                continue
            flag = "--" + name.replace("_", "-")
            if name == "flash_attn":
                args += [flag, str(value)]
            elif value is True:
                args.append(flag)
            elif value is False:
                args.append("--no-" + name.replace("_", "-"))
            else:
                args += [flag, _text(value)]
    else:
        for path, flag in FLAGS.items():
            value = at_path(req, path)
            if value is None or (path in fields and value == fields[path].get("default")):
                continue
            if path == "precision.weights" and at_path(req, "precision.autocast") and value == "fp32":
                continue                          # the CLI stores weights in fp32 under --autocast
            if value is True:
                args.append(flag)
            elif value is False:
                continue
            else:
                args += [flag, _text(value)]
        if at_path(req, "workload.peft_config") is not None:
            args += ["--peft-config", "adapter_config.json"]      # the config itself travels as that file
        size = [at_path(req, "workload.image_" + side) for side in ("height", "width")]
        if any(size):
            args += ["--image-size", "x".join(str(v or "") for v in size)]
        ctx = at_path(req, "framework.cuda_context_bytes")
        if ctx is not None:
            args += ["--cuda-context-mib", _text(ctx / 2 ** 20)]
        layers = at_path(req, "parallelism.pipeline_layers")
        if layers:
            args += ["--pipeline-layers", ",".join(map(str, layers))]
        for key, value in sorted((at_path(req, "parallelism.options") or {}).items()):
            args += ["--option", f"{key}={_text(value)}"]
    gpu = req.get("gpu")
    if isinstance(gpu, dict) and gpu.get("memory_gib") is not None:
        args += ["--gpu-memory-gib", _text(gpu["memory_gib"])]
    elif isinstance(gpu, str):
        args += ["--gpu", gpu]
    return shlex.join(args)


def markdown(result: dict) -> str:
    """The result's breakdown as a Markdown table (the page's "Export as Markdown")."""
    from .units import GiB
    lines = [f"**{result['model']['name']}** on **{result['gpu']['name']}** "
             f"({result['gpu']['memory_bytes'] / GiB:.2f} GiB): {result['device_total_bytes'] / GiB:.2f} GiB, "
             f"{result.get('verdict', 'fits' if result.get('fits') else 'does not fit')}", "",
             "| term | GiB | bytes |", "| --- | ---: | ---: |"]

    def walk(node, depth):
        name = ("&nbsp;" * 4 * depth) + str(node["name"]).replace("|", "\\|")
        lines.append(f"| {name} | {node['bytes'] / GiB:.2f} | {node['bytes']:,} |")
        if depth < 2:
            for child in node.get("children", []):
                walk(child, depth + 1)
    walk(result["breakdown"], 0)
    band = (result.get("error_band") or {}).get("basis")
    if band:
        lines += ["", f"Error band: {band}"]
    return "\n".join(lines) + "\n"
