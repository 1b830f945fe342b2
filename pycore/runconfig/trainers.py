"""Fine-tuning tools' YAML configs: axolotl, LLaMA-Factory and torchtune recipes, read into a request."""

from __future__ import annotations

from .launchers import fsdp_layout
from .reading import Reading, as_int

_ATTENTION = {"flash_attention": "flash", "sdp_attention": "sdpa", "eager_attention": "eager"}


# axolotl's own default optimizer, whatever the torch version (src/axolotl/utils/schemas/training.py:122-125,
# axolotl 0.19.0).
AXOLOTL_OPTIMIZER = ("adamw_torch_fused", "axolotl 0.19 (utils/schemas/training.py)")


def read_axolotl(r: Reading) -> None:
    """axolotl (src/axolotl/utils/schemas/config.py): base_model, sequence_len, micro_batch_size,
    adapter lora/qlora with lora_r/lora_alpha/lora_target_modules/lora_target_linear, bf16/fp16/float32,
    gradient_checkpointing, the attention flags, optimizer, fsdp / fsdp_config."""
    r.model("base_model")
    r.integer("sequence_len", "workload.seq_len")
    r.integer("micro_batch_size", "workload.batch_size")
    r.integer("gradient_accumulation_steps", "parallelism.gradient_accumulation")
    adapter = r.get("adapter")
    if adapter in ("lora", "qlora"):
        mode = "qlora" if adapter == "qlora" or r.get("load_in_4bit") is True else "lora"
        r.use("adapter", "workload.mode", mode)
        if mode == "qlora" and r.has("load_in_4bit"):
            r.consumed("load_in_4bit")
        if r.get("load_in_8bit") is True:
            r.consumed("load_in_8bit")
            r.note("load_in_8bit: an 8-bit base is not modelled; estimated as LoRA over a 16-bit base (more "
                   "memory than the 8-bit run)")
        r.integer("lora_r", "workload.lora.rank")
        _lora_alpha(r, "lora_alpha")
        if r.get("lora_target_linear") is True:
            r.use("lora_target_linear", "workload.lora.targets", "all-linear")
        elif isinstance(r.get("lora_target_modules"), list):
            r.use("lora_target_modules", "workload.lora.targets", [str(t) for t in r.get("lora_target_modules")])
    elif adapter is None and r.has("base_model"):
        r.use("adapter" if r.has("adapter") else "base_model", "workload.mode", "full")
    for key in ("load_in_8bit", "load_in_4bit"):
        if r.get(key) is False:
            r.consumed(key)
    _dtype_flags(r, ("bf16", "bfloat16", "fp16", "float16", "float32"))
    r.flag("gradient_checkpointing", "workload.gradient_checkpointing")
    for key, kernel in _ATTENTION.items():
        if r.get(key) is True:
            r.use(key, "workload.attention", kernel)
        elif r.has(key):
            r.consumed(key)
    r.hf_optimizer("optimizer", AXOLOTL_OPTIMIZER)
    fsdp = r.get("fsdp")
    if isinstance(fsdp, list) and fsdp or r.get("fsdp_config"):
        _hf_fsdp(r, "fsdp", "fsdp_config")
    _deepspeed_path(r, "deepspeed")


def read_llamafactory(r: Reading) -> None:
    """LLaMA-Factory (src/llamafactory/hparams/): model_name_or_path, finetuning_type, quantization_bit,
    lora_rank/lora_alpha/lora_target, cutoff_len, the TrainingArguments fields (batch, accumulation,
    bf16/fp16, optim, deepspeed), flash_attn and disable_gradient_checkpointing."""
    r.model("model_name_or_path")
    kind = r.get("finetuning_type", "lora")         # FinetuningArguments.finetuning_type default "lora"
    quant = as_int(r.get("quantization_bit"))
    if kind == "lora":
        r.use("finetuning_type" if r.has("finetuning_type") else "model_name_or_path", "workload.mode",
              "qlora" if quant == 4 else "lora")
        if quant is not None:
            r.consumed("quantization_bit")
            if quant != 4:
                r.note(f"quantization_bit {quant}: only a 4-bit base (QLoRA) is modelled; estimated as LoRA")
        # FinetuningArguments: lora_rank 8, lora_alpha None -> lora_rank * 2, lora_target "all"
        rank = as_int(r.get("lora_rank", 8)) or 8
        if r.has("lora_rank"):
            r.use("lora_rank", "workload.lora.rank", rank)
        else:
            r.request.setdefault("workload", {}).setdefault("lora", {})["rank"] = rank
        if r.has("lora_alpha"):
            _lora_alpha(r, "lora_alpha")
        else:
            r.request["workload"]["lora"]["alpha"] = 2 * rank
        target = r.get("lora_target", "all")
        targets = "all-linear" if target == "all" else [t.strip() for t in str(target).split(",") if t.strip()]
        if r.has("lora_target"):
            r.use("lora_target", "workload.lora.targets", targets)
        else:
            r.request["workload"]["lora"]["targets"] = targets
    elif kind in ("full", "freeze"):
        r.use("finetuning_type", "workload.mode", "full")
        if kind == "freeze":
            r.note("finetuning_type freeze: estimated as full training (an upper bound: frozen layers keep "
                   "no gradients or optimizer states)")
    # DataArguments.cutoff_len defaults to 2048 (src/llamafactory/hparams/data_args.py @072bfe29)
    r.integer("cutoff_len", "workload.seq_len") if r.has("cutoff_len") else \
        r.request.setdefault("workload", {}).setdefault("seq_len", 2048)
    r.integer("per_device_train_batch_size", "workload.batch_size")
    r.integer("gradient_accumulation_steps", "parallelism.gradient_accumulation")
    _llamafactory_precision(r, kind)
    # LLaMA-Factory turns gradient checkpointing on unless disable_gradient_checkpointing
    # (src/llamafactory/model/model_utils/checkpointing.py @908cd68e, prepare_model_for_training)
    if r.has("disable_gradient_checkpointing"):
        r.flag("disable_gradient_checkpointing", "workload.gradient_checkpointing", invert=True)
    else:
        r.request.setdefault("workload", {})["gradient_checkpointing"] = True
    attn = r.get("flash_attn")
    if attn in ("fa2", "sdpa", "disabled", "auto"):
        r.use("flash_attn", "workload.attention", {"fa2": "flash", "sdpa": "sdpa", "disabled": "eager",
                                                   "auto": "sdpa"}[attn])
    r.hf_optimizer("optim")
    _deepspeed_path(r, "deepspeed")
    if r.get("fsdp"):
        _hf_fsdp(r, "fsdp", "fsdp_config")


def _llamafactory_precision(r: Reading, kind: str) -> None:
    """bf16/fp16 load the model in that dtype; full tuning then casts the trained parameters to fp32 under
    autocast unless pure_bf16 (src/llamafactory/model/adapter.py @99e0c3e4, init_adapter's
    cast_trainable_params_to_fp32 and _setup_full_tuning; under ZeRO-3/FSDP they stay fp32 as loaded)."""
    for dtype in ("bf16", "fp16"):
        if r.get(dtype) is True:
            if kind in ("full", "freeze") and r.get("pure_bf16") is not True:
                r.use(dtype, "precision.weights", "fp32")
                r.request["precision"]["autocast"] = dtype
            else:
                r.use(dtype, "precision.weights", dtype)
        elif r.has(dtype):
            r.consumed(dtype)
    if r.get("pure_bf16") is True:
        r.use("pure_bf16", "precision.weights", "bf16")
        r.request["precision"].pop("autocast", None)


# torchtune model builders (torchtune/models/<family>/_model_builders.py) -> catalog ids, as builder=id.
_TORCHTUNE_MODELS = dict(pair.split("=") for pair in """
    llama3_1_8b=llama-3.1-8b llama3_1_70b=llama-3.1-70b llama3_1_405b=llama-3.1-405b llama3_2_1b=llama-3.2-1b
    llama3_2_3b=llama-3.2-3b llama3_8b=meta-llama-3-8b llama3_70b=meta-llama-3-70b
    llama3_3_70b=llama-3.3-70b-instruct llama2_7b=llama-2-7b llama2_13b=llama-2-13b llama2_70b=llama-2-70b
    mistral_7b=mistral-7b gemma_2b=gemma-2b gemma_7b=gemma-7b gemma2_2b=gemma-2-2b gemma2_9b=gemma-2-9b
    gemma2_27b=gemma-2-27b phi3_mini=phi-3-mini phi4_14b=phi-4 qwen2_5_0_5b=qwen2.5-0.5b
    qwen2_5_1_5b_base=qwen2.5-1.5b qwen2_5_3b=qwen2.5-3b qwen2_5_7b_base=qwen2.5-7b qwen2_5_14b_base=qwen2.5-14b
    qwen2_5_32b_base=qwen2.5-32b qwen2_5_72b_base=qwen2.5-72b qwen3_0_6b_base=qwen3-0.6b
    qwen3_1_7b_base=qwen3-1.7b qwen3_4b_base=qwen3-4b qwen3_8b_base=qwen3-8b qwen3_14b_base=qwen3-14b
    qwen3_32b=qwen3-32b
""".split())
# torchtune's module names (torchtune/modules/peft/_utils.py LORA_ATTN_MODULES) -> transformers' names.
_TORCHTUNE_LINEARS = {"q_proj": "q_proj", "k_proj": "k_proj", "v_proj": "v_proj", "output_proj": "o_proj"}
_TORCHTUNE_MLP = ("gate_proj", "up_proj", "down_proj")     # w1, w3, w2 in torchtune's FeedForward
# torchtune optimizers by _component_ -> workload.optimizer (fused/foreach read as torch.optim.AdamW's).
_TORCHTUNE_OPTIMIZERS = {"torch.optim.AdamW": "adamw", "torch.optim.Adam": "adamw", "torch.optim.SGD": "sgd",
                         "bitsandbytes.optim.PagedAdamW8bit": "paged_adamw_8bit",
                         "bitsandbytes.optim.AdamW8bit": "adamw_8bit", "bitsandbytes.optim.PagedAdamW": None}


def read_torchtune(r: Reading) -> None:
    """A torchtune recipe config: the model builder (lora_/qlora_ prefix, size), its LoRA settings,
    batch_size, gradient_accumulation_steps, dtype, enable_activation_checkpointing, the optimizer and
    tokenizer.max_seq_len."""
    component = str(r.get("model._component_", ""))
    builder = component.rsplit(".", 1)[-1]
    mode = "full"
    for prefix, kind in (("qlora_", "qlora"), ("lora_", "lora")):
        if builder.startswith(prefix):
            builder, mode = builder[len(prefix):], kind
    model_id = _TORCHTUNE_MODELS.get(builder) or _TORCHTUNE_MODELS.get(builder + "_base")
    if model_id:
        r.use("model._component_", "model", model_id)
    else:
        r.consumed("model._component_")
        r.note(f"model._component_: {component:.80} is not a builder this reader knows; give --model or "
               "--hf-config")
    r.request.setdefault("workload", {})["mode"] = mode
    if mode != "full":
        r.integer("model.lora_rank", "workload.lora.rank")
        _lora_alpha(r, "model.lora_alpha")
        modules = r.get("model.lora_attn_modules")
        if isinstance(modules, list):
            targets = [_TORCHTUNE_LINEARS.get(str(m), str(m)) for m in modules]
            if r.get("model.apply_lora_to_mlp") is True:
                targets += list(_TORCHTUNE_MLP)
                r.consumed("model.apply_lora_to_mlp")
            r.use("model.lora_attn_modules", "workload.lora.targets", targets)
        if r.get("model.apply_lora_to_output") is False:
            r.consumed("model.apply_lora_to_output")
    r.integer("batch_size", "workload.batch_size")
    r.integer("gradient_accumulation_steps", "parallelism.gradient_accumulation")
    seq = as_int(r.get("tokenizer.max_seq_len"))
    if seq:
        r.use("tokenizer.max_seq_len", "workload.seq_len", seq)
    else:
        r.note("tokenizer.max_seq_len is not set: the sequence length is the data's; give --seq")
    dtype = r.get("dtype")
    if dtype in ("bf16", "fp32", "fp16"):
        r.use("dtype", "precision.weights", dtype)          # torchtune trains in this dtype throughout
    r.flag("enable_activation_checkpointing", "workload.gradient_checkpointing")
    _torchtune_optimizer(r)


def _torchtune_optimizer(r: Reading) -> None:
    component = r.get("optimizer._component_")
    if component is None:
        return
    mapped = _TORCHTUNE_OPTIMIZERS.get(str(component))
    if mapped is None:
        r.consumed("optimizer._component_")
        r.note(f"optimizer._component_: {component!s:.60} is not modelled; the estimate uses AdamW")
        return
    if mapped == "adamw":
        if r.get("optimizer.fused") is True:
            mapped = "adamw_fused"
            r.consumed("optimizer.fused")
        elif r.get("optimizer.foreach") is False:
            mapped = "adamw_single"
            r.consumed("optimizer.foreach")
    elif mapped == "sgd" and (as_int(r.get("optimizer.momentum")) or r.get("optimizer.momentum")):
        mapped = "sgd_momentum"
        r.consumed("optimizer.momentum")
    r.use("optimizer._component_", "workload.optimizer", mapped)


def _lora_alpha(r: Reading, source: str) -> None:
    value = r.get(source)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        r.use(source, "workload.lora.alpha", value)


def _dtype_flags(r: Reading, keys) -> None:
    """axolotl loads the model in bf16 when bf16 (true or auto) or bfloat16, in fp16 when fp16 or float16,
    else in fp32 (src/axolotl/utils/config/__init__.py normalize_config: cfg.torch_dtype)."""
    for key, dtype in (("bf16", "bf16"), ("bfloat16", "bf16"), ("fp16", "fp16"), ("float16", "fp16")):
        value = r.get(key)
        if value is True or (key == "bf16" and value == "auto"):
            r.use(key, "precision.weights", dtype)
            for other in keys:
                if r.has(other) and other != key:
                    r.consumed(other)
            return
    for key in keys:
        if r.has(key):
            r.consumed(key)
    r.request.setdefault("precision", {})["weights"] = "fp32"
    r.note("no bf16 or fp16: axolotl loads the model in fp32")


def _hf_fsdp(r: Reading, fsdp: str, config: str) -> None:
    """TrainingArguments-style fsdp: a list (or space-separated text) of FSDPOption names, and fsdp_config."""
    options = r.get(fsdp) or []
    if isinstance(options, str):
        options = options.split()
    names = [str(o).upper() for o in options]
    strategy = next((n for n in names if n in ("FULL_SHARD", "SHARD_GRAD_OP", "HYBRID_SHARD", "HYBRID_SHARD_ZERO2",
                                               "NO_SHARD")), None)
    strategy = strategy or r.get(f"{config}.fsdp_sharding_strategy") or "FULL_SHARD"
    offload = "OFFLOAD" in names or r.get(f"{config}.fsdp_offload_params") is True
    fsdp_layout(r, strategy, offload or None, r.get(f"{config}.fsdp_version"),
                r.get(f"{config}.fsdp_reshard_after_forward"),
                {"strategy": fsdp if r.has(fsdp) else f"{config}.fsdp_sharding_strategy",
                 "offload": f"{config}.fsdp_offload_params" if r.has(f"{config}.fsdp_offload_params") else fsdp,
                 "version": f"{config}.fsdp_version", "reshard": f"{config}.fsdp_reshard_after_forward"})
    if r.has(f"{config}.fsdp_sharding_strategy"):
        r.consumed(f"{config}.fsdp_sharding_strategy")
    r.note("the number of GPUs is not in the file: give --dp N (FSDP shards over them)")


def _deepspeed_path(r: Reading, source: str) -> None:
    path = r.get(source)
    if isinstance(path, str) and path.strip():
        r.consumed(source)
        r.deepspeed_file = path.strip()
    elif isinstance(path, dict):
        from .launchers import read_deepspeed
        read_deepspeed(r, source + ".")
