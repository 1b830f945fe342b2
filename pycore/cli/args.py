"""The command line's flags and the JSON request they make (the same request the page sends)."""

from __future__ import annotations

import json

from ..errors import InputError
from ..jsontext import MAX_JSON_CHARS, check_limits

LAYOUT_FLAGS = (  # flag, request field, type
    ("--recipe", "recipe", str), ("--dp", "data_parallel", int), ("--tp", "tensor_parallel", int),
    ("--pp", "pipeline_parallel", int), ("--vpp", "virtual_stages", int), ("--cp", "context_parallel", int),
    ("--ep", "expert_parallel", int), ("--etp", "expert_tensor_parallel", int), ("--zero", "zero_stage", int), ("--offload-optimizer", "offload_optimizer", str),
    ("--offload-params", "offload_params", str), ("--micro-batches", "micro_batches", int),
    ("--grad-accum", "gradient_accumulation", int), ("--recompute", "recompute", str),
    ("--recompute-layers", "recompute_layers", int), ("--gpus-per-node", "gpus_per_node", int),
)


def add_model_args(p) -> None:
    g = p.add_argument_group("model (one of)")
    g.add_argument("--model", help="catalog id (see `models`)")
    g.add_argument("--hf-config", metavar="FILE", help="a Hugging Face config.json")
    g.add_argument("--params", type=float, default=None, help="a model given by its parameter count (model states only)")
    g.add_argument("--largest-layer-params", type=float, default=None, help="with --params: the largest module's parameters")


def add_workload_args(p, serving: bool = False) -> None:
    g = p.add_argument_group("workload")
    g.add_argument("--mode", default="full", help="full, lora, qlora, peft or inference")
    g.add_argument("--peft-config", metavar="FILE", default=None,
                   help="mode peft: a PEFT adapter_config.json (any peft_type; see docs/methods.md)")
    g.add_argument("--batch", type=int, default=1, help="micro-batch (sequences per step per GPU)")
    g.add_argument("--seq", type=int, default=2048, help="tokens per sequence (the prompt, for inference)")
    g.add_argument("--new-tokens", type=int, default=0, help="inference: tokens generated (0 = one forward pass)")
    g.add_argument("--weights", default=None, help="fp32, bf16, fp16; for inference also fp8, int8, int4")
    g.add_argument("--autocast", default=None, help="bf16 or fp16: mixed precision over fp32 weights")
    g.add_argument("--activations", default=None, help="weight-only quantised inference: bf16 or fp16")
    g.add_argument("--kv-cache", default=None, help="KV cache dtype (default: the compute dtype)")
    g.add_argument("--optimizer", default="adamw")
    g.add_argument("--attention", default="sdpa", help="sdpa, flash or eager")
    g.add_argument("--checkpointing", action="store_true", help="gradient checkpointing on every layer")
    g.add_argument("--loss-kernel", default=None, help="liger-flce, cut-cross-entropy, torchtune-chunked or "
                                                       "flash-attn-ce (default: transformers' loss)")
    g.add_argument("--liger-kernels", action="store_true", help="Liger RMSNorm, SwiGLU and RoPE")
    g.add_argument("--peft-nf4-base", action="store_true", help="mode peft: the adapter over a 4-bit NF4 base")
    g.add_argument("--compile", action="store_true", help="torch.compile the model (unverified rule)")
    g.add_argument("--activation-offload", default=None, help="torchtune, unsloth or deepspeed-cpu")
    g.add_argument("--packing", default=None, help="packed sequences: flash-varlen or sdpa-mask")
    g.add_argument("--images", type=int, default=None, help="multimodal models: images per sequence")
    g.add_argument("--image-size", default=None, metavar="HxW", help="image height x width in pixels")
    g.add_argument("--lora-rank", type=int, default=16)
    g.add_argument("--lora-alpha", type=float, default=32)
    g.add_argument("--lora-targets", default=None,
                   help="comma-separated module names, or all-linear (default: the attention projections)")
    g.add_argument("--head", default=None, help="causal-lm, masked-lm, sequence-classification, token-classification "
                                                "or reward (default: the model's language-modelling head)")
    g.add_argument("--num-labels", type=int, default=None, help="classification heads: outputs")
    g.add_argument("--cache-implementation", default=None, help="inference: dynamic (default) or static")
    g.add_argument("--quant-format", default=None, help="inference: a quantised checkpoint's format (gptq, awq, "
                                                        "bnb-nf4, ...; default: the config's quantization_config)")
    g.add_argument("--quant-kernel", default=None, help="inference: the quantised format's kernel (default auto)")
    v = p.add_argument_group("software versions (the rules of docs/method.md#versions)")
    v.add_argument("--torch-version", default=None, help="PyTorch version (default 2.11)")
    v.add_argument("--transformers-version", default=None, help="transformers version (default 5.17)")
    v.add_argument("--peft-version", default=None, help="peft version (default 0.21)")
    v.add_argument("--cuda-context-mib", type=float, default=None, help="memory outside the allocator, MiB "
                                                                         "(default: by torch version)")
    v.add_argument("--alloc-conf", default=None, help="PYTORCH_CUDA_ALLOC_CONF, e.g. expandable_segments:True "
                                                      "(training: the caching allocator is replayed)")


def add_layout_args(p) -> None:
    g = p.add_argument_group("multi-GPU layout (training)")
    for flag, field, kind in LAYOUT_FLAGS:
        g.add_argument(flag, type=kind, default=None, dest=f"par_{field}", help=f"parallelism.{field}")
    g.add_argument("--sp", action="store_true", dest="par_sequence_parallel", default=None,
                   help="sequence parallelism (norm and dropout activations split by --tp)")
    g.add_argument("--pipeline-layers", default=None, help="uneven split: comma-separated layers per stage")
    g.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a recipe option (parallelism.options), e.g. --option reduce_bucket_size=2e8")


# Short flags of the serving verb, as the engines spell them: --tp and --pp map to the engine's own
# field (vLLM tensor_parallel_size, SGLang tp_size); --ngl and --flash-attn are llama.cpp's.
SERVE_ALIASES = {"--tp": ("tensor_parallel_size", "tp_size"), "--pp": ("pipeline_parallel_size", "pp_size"),
                 "--dp": ("data_parallel_size", None)}


def add_serve_args(p) -> None:
    """One flag per serving field (--max-model-len, --gpu-memory-utilization, --n-ctx, ...), read from
    the schema, so the CLI accepts exactly what the request does."""
    import argparse
    from ..schema import _fields
    from ..serving.config import Serving
    g = p.add_argument_group("serving (engine settings; see docs/serving.md)")
    kinds = {"int": int, "number": float, "text": str, "choice": str}
    for name, f, _ in _fields(Serving):
        flag = "--" + name.replace("_", "-")
        if name == "flash_attn":
            g.add_argument(flag, dest="serve_flash_attn", nargs="?", const="on", default=None,
                           help="llama.cpp: on (when given without a value), off or auto")
            continue
        help_text = f.doc or name
        if f.engines:
            help_text += f" [{', '.join(f.engines)}]"
        if f.kind == "bool":
            g.add_argument(flag, dest=f"serve_{name}", action=argparse.BooleanOptionalAction, default=None,
                           help=help_text)
        elif f.kind == "choice" and all(isinstance(c, int) for c in f.choices):
            g.add_argument(flag, dest=f"serve_{name}", type=int, default=None, help=help_text)
        else:
            g.add_argument(flag, dest=f"serve_{name}", type=kinds[f.kind], default=None, help=help_text)
    for flag in SERVE_ALIASES:
        g.add_argument(flag, dest=f"alias_{flag[2:]}", type=int, default=None, help="tensor/pipeline/data degree")
    g.add_argument("--ngl", dest="serve_n_gpu_layers", type=int, default=None, help="llama.cpp -ngl")


def serve_part(a) -> dict:
    from ..schema import _fields
    from ..serving.config import Serving
    w = {"mode": "serve"}
    for name, _, _ in _fields(Serving):
        value = getattr(a, f"serve_{name}", None)
        if value is not None:
            w[name] = _whole(value) if isinstance(value, float) and name.endswith(("_bytes", "_tokens")) else value
    engine = w.get("engine", "vllm")
    for flag, (vllm_name, sglang_name) in SERVE_ALIASES.items():
        value = getattr(a, f"alias_{flag[2:]}", None)
        if value is not None:
            target = sglang_name if engine == "sglang" else vllm_name
            if target is None:
                target = vllm_name
            w[target] = value
    return w


def add_gpu_args(p) -> None:
    g = p.add_argument_group("GPU")
    g.add_argument("--gpu", default="h100-sxm-80gb", help="catalog id (see `gpus`)")
    g.add_argument("--gpu-memory-gib", type=float, default=None, help="a custom GPU's memory instead of --gpu")


def read_text_file(path: str, option: str) -> tuple[str, str | None]:
    """Read at most MAX_JSON_CHARS characters of UTF-8 text; a longer file (or /dev/zero) is refused
    without reading the rest."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(4 * MAX_JSON_CHARS + 4)          # UTF-8 takes at most 4 bytes a character
    except OSError as exc:
        return "", f"{option}: cannot read {printable(path)}: {printable(exc.strerror or str(exc))}"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "", f"{option}: {printable(path)} is not UTF-8 text (byte {exc.start})"
    if len(text) > MAX_JSON_CHARS:
        return "", f"{option}: {printable(path)} is longer than {MAX_JSON_CHARS:,} characters"
    return text, None


def printable(text) -> str:
    """``text`` with control characters, lone surrogates and other unprintable characters escaped,
    so that a name from a config file cannot move the cursor, retitle or clear the terminal."""
    return "".join(ch if ch.isprintable() or ch == "\n" else ascii(ch)[1:-1] for ch in str(text))


def _whole(x: float):
    return int(x) if x == int(x) else x


def model_part(a) -> tuple[dict, str | None]:
    if a.hf_config:
        text, problem = read_text_file(a.hf_config, "--hf-config")
        return ({"hf_config": text}, problem)          # parsed by the core, bounded in size and depth
    if a.params is not None:
        model = {"parameters": _whole(a.params)}
        if a.largest_layer_params is not None:
            model["largest_layer_parameters"] = _whole(a.largest_layer_params)
        return {"model": model}, None
    if a.model:
        return {"model": a.model}, None
    return {}, "give --model ID, --hf-config FILE or --params N"


def layout_part(a) -> tuple[dict, str | None]:
    par = {}
    for _, field, _ in LAYOUT_FLAGS + (("", "sequence_parallel", bool),):
        value = getattr(a, f"par_{field}", None)
        if value is not None:
            par[field] = value
    if a.pipeline_layers:
        try:
            par["pipeline_layers"] = [int(x) for x in a.pipeline_layers.split(",")]
        except ValueError:
            return {}, "--pipeline-layers: give whole numbers separated by commas"
    options = {}
    for item in a.option:
        key, sep, value = item.partition("=")
        if not sep:
            return {}, f"--option {printable(item)}: give KEY=VALUE"
        try:
            check_limits(value, f"--option {printable(key)[:40]}")     # the API's limits, before parsing
        except InputError as exc:
            return {}, str(exc)
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value            # not JSON: the text itself, checked by the option's field
    if options:
        par["options"] = {k: _whole(v) if isinstance(v, float) else v for k, v in options.items()}
    return par, None


def read_json_file(path: str, option: str) -> tuple[object, str | None]:
    """A JSON file such as adapter_config.json, bounded like --hf-config; the core checks its fields."""
    text, problem = read_text_file(path, option)
    if problem:
        return None, problem
    from ..errors import InputError
    from ..jsontext import parse_json
    try:
        return parse_json(text, option), None
    except InputError as exc:
        return None, printable(f"{option}: {exc.message}")


def build_request(a) -> tuple[dict, str | None]:
    req: dict = {"schema": 1}
    model, problem = model_part(a)
    if problem:
        return {}, problem
    req.update(model)
    targets = a.lora_targets
    if targets not in (None, "all-linear"):
        targets = [t for t in targets.split(",") if t]
    req["workload"] = {"mode": a.mode, "batch_size": a.batch, "seq_len": a.seq, "new_tokens": a.new_tokens,
                       "optimizer": a.optimizer, "attention": a.attention, "gradient_checkpointing": a.checkpointing,
                       "lora": {"rank": a.lora_rank, "alpha": _whole(a.lora_alpha)}}
    if getattr(a, "cache_implementation", None):
        req["workload"]["cache_implementation"] = a.cache_implementation
    if targets is not None:
        req["workload"]["lora"]["targets"] = targets
    if getattr(a, "head", None):
        req["workload"]["head"] = a.head
    if getattr(a, "num_labels", None) is not None:
        req["workload"]["num_labels"] = a.num_labels
    for key, value in (("loss_kernel", getattr(a, "loss_kernel", None)), ("activation_offload",
                       getattr(a, "activation_offload", None)), ("packing", getattr(a, "packing", None)),
                       ("liger_kernels", getattr(a, "liger_kernels", False)), ("torch_compile", getattr(a, "compile", False)),
                       ("peft_nf4_base", getattr(a, "peft_nf4_base", False))):
        if value:
            req["workload"][key] = value
    if getattr(a, "images", None) is not None or getattr(a, "image_size", None):
        from ..training.vision import image_fields
        fields, problem = image_fields(a.images, a.image_size)
        if problem:
            return {}, problem
        req["workload"].update(fields)
    if getattr(a, "peft_config", None):
        adapter, problem = read_json_file(a.peft_config, "--peft-config")
        if problem:
            return {}, problem
        req["workload"]["peft_config"] = adapter
    framework = {k: v for k, v in (("torch", getattr(a, "torch_version", None)),
                                   ("transformers", getattr(a, "transformers_version", None)),
                                   ("peft", getattr(a, "peft_version", None))) if v}
    if getattr(a, "cuda_context_mib", None) is not None:
        framework["cuda_context_bytes"] = int(a.cuda_context_mib * 2 ** 20)
    if getattr(a, "alloc_conf", None):
        framework["alloc_conf"] = a.alloc_conf
    if framework:
        req["framework"] = framework
    weights = a.weights or ("fp32" if a.autocast else "bf16")
    req["precision"] = {"weights": weights, "autocast": a.autocast, "kv_cache": a.kv_cache,
                        "activations": a.activations}
    for key in ("quant_format", "quant_kernel"):
        if getattr(a, key, None):
            req["precision"][key] = getattr(a, key)
    req["gpu"] = {"memory_gib": a.gpu_memory_gib} if a.gpu_memory_gib is not None else a.gpu
    req["solve"] = getattr(a, "solve", False)
    par, problem = layout_part(a)
    if problem:
        return {}, problem
    if par:
        req["parallelism"] = par
    return req, None
