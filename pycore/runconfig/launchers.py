"""DeepSpeed JSON configs and accelerate configs (``accelerate config`` YAML): the layout they launch.

The same readings serve the pre-flight integrations (pycore/integrations), which hand over the DeepSpeed
dict or the FSDP settings that TrainingArguments, accelerate or Lightning hold."""

from __future__ import annotations

from .reading import Reading, as_int

# DeepSpeed zero_optimization keys -> parallelism.options of recipe deepspeed (pycore/parallel/options.py);
# names as in deepspeed/runtime/zero/config.py @38327e07.
_DS_OPTIONS = {"reduce_bucket_size": "reduce_bucket_size", "allgather_bucket_size": "allgather_bucket_size",
               "stage3_prefetch_bucket_size": "prefetch_bucket_size",
               "stage3_max_live_parameters": "max_live_parameters",
               "stage3_param_persistence_threshold": "param_persistence_threshold",
               "sub_group_size": "sub_group_size"}
_OFFLOAD_DEVICES = ("cpu", "nvme", "none")
# DeepSpeed's optimizer.type (deepspeed/runtime/config.py: ADAM_OPTIMIZER, ADAMW_OPTIMIZER, ...) -> workload.optimizer.
_DS_OPTIMIZERS = {"adam": "adamw", "adamw": "adamw", "lion": "lion", "sgd": "sgd"}
# accelerate's FSDP sharding strategies (accelerate/utils/constants.py FSDP_SHARDING_STRATEGY; the config
# file may hold the name or its 1-based number, as `accelerate config` wrote it before 0.24).
_FSDP_STRATEGIES = {"1": "FULL_SHARD", "2": "SHARD_GRAD_OP", "3": "NO_SHARD", "4": "HYBRID_SHARD",
                    "5": "HYBRID_SHARD_ZERO2"}


def read_deepspeed(r: Reading, prefix: str = "") -> None:
    """A DeepSpeed config (the whole file, or the dict under ``prefix``): ZeRO stage, offload, buckets,
    micro-batch, accumulation, precision and optimizer. "auto" values (filled in by the HF Trainer) are
    read and set nothing."""
    p = prefix
    zero = f"{p}zero_optimization"
    stage = as_int(r.get(f"{zero}.stage", 0))
    r.use(f"{zero}.stage" if r.has(f"{zero}.stage") else zero, "parallelism.recipe", "deepspeed")
    r.use(f"{zero}.stage", "parallelism.zero_stage", stage if stage in (0, 1, 2, 3) else 0)
    for key, target in (("offload_optimizer", "offload_optimizer"), ("offload_param", "offload_params")):
        device = r.get(f"{zero}.{key}.device")
        if device is not None:
            device = str(device).lower()
            if device in _OFFLOAD_DEVICES:
                r.use(f"{zero}.{key}.device", f"parallelism.{target}", device)
    for key, option in _DS_OPTIONS.items():
        r.integer(f"{zero}.{key}", f"parallelism.options.{option}")
    if isinstance(r.get(f"{zero}.overlap_comm"), bool):
        r.use(f"{zero}.overlap_comm", "parallelism.options.overlap_comm", r.get(f"{zero}.overlap_comm"))
    accum = r.get(f"{p}data_types.grad_accum_dtype")
    if accum in ("bf16", "fp32"):
        r.use(f"{p}data_types.grad_accum_dtype", "parallelism.options.grad_accum_dtype", accum)
    r.integer(f"{p}train_micro_batch_size_per_gpu", "workload.batch_size")
    r.integer(f"{p}gradient_accumulation_steps", "parallelism.gradient_accumulation")
    for dtype in ("bf16", "fp16"):
        enabled = r.get(f"{p}{dtype}.enabled")
        if enabled is True:
            r.use(f"{p}{dtype}.enabled", "precision.weights", dtype)
        elif enabled is not None:
            r.consumed(f"{p}{dtype}.enabled")
    kind = r.get(f"{p}optimizer.type")
    if isinstance(kind, str) and kind.lower() in _DS_OPTIMIZERS:
        r.use(f"{p}optimizer.type", "workload.optimizer", _DS_OPTIMIZERS[kind.lower()])


def fsdp_layout(r: Reading, strategy, offload, version, reshard, sources: dict) -> None:
    """FSDP settings (accelerate, TrainingArguments.fsdp, axolotl fsdp_config) as recipe fsdp2: FULL_SHARD
    reshards after forward, SHARD_GRAD_OP keeps the gathered parameters to backward (ZeRO-2-like),
    HYBRID_SHARD shards within a node; CPU offload moves parameters, gradients and the optimizer step to
    the host (torch CPUOffload / CPUOffloadPolicy)."""
    name = _FSDP_STRATEGIES.get(str(strategy), str(strategy).upper()) if strategy is not None else None
    r.use(sources.get("strategy", sources.get("fsdp", "fsdp")), "parallelism.recipe", "fsdp2")
    if name == "NO_SHARD":
        r.request["parallelism"]["recipe"] = "hf"            # DDP: every rank holds everything
        return
    if name in ("SHARD_GRAD_OP", "HYBRID_SHARD_ZERO2") or reshard is False:
        r.use(sources.get("reshard" if reshard is False else "strategy"),
              "parallelism.options.reshard_after_forward", False)
    if name in ("HYBRID_SHARD", "HYBRID_SHARD_ZERO2"):
        r.note("hybrid sharding shards within a node: give --option shard_group=GPUS_PER_NODE")
    if offload is True:
        r.use(sources["offload"], "parallelism.offload_params", "cpu")
        r.request["parallelism"]["offload_optimizer"] = "cpu"
    if version is not None:
        r.consumed(sources["version"])
        if str(version) == "1":
            r.note("FSDP version 1 is estimated with FSDP2's recipe (the same sharded states; FSDP1's flat "
                   "parameters gather a whole wrapped unit at a time)")


def read_accelerate(r: Reading) -> None:
    """An ``accelerate config`` file: processes, mixed precision, and the DeepSpeed or FSDP plugin."""
    kind = str(r.get("distributed_type", "NO")).upper()
    r.consumed("distributed_type")
    processes = as_int(r.get("num_processes"))
    if processes and processes > 1:
        r.use("num_processes", "parallelism.data_parallel", processes)
    elif r.has("num_processes"):
        r.consumed("num_processes")
    mixed = str(r.get("mixed_precision", "no")).lower()
    if mixed in ("bf16", "fp16"):
        # accelerate's mixed precision is torch.autocast over the weights the script loads (fp32 unless
        # the script casts them): accelerate/accelerator.py, native_amp
        r.use("mixed_precision", "precision.weights", "fp32")
        r.request["precision"]["autocast"] = mixed
    elif r.has("mixed_precision"):
        r.consumed("mixed_precision")
    if kind == "DEEPSPEED":
        ds = "deepspeed_config"
        if r.has(f"{ds}.deepspeed_config_file"):
            r.consumed(f"{ds}.deepspeed_config_file")
            r.note(f"{ds}.deepspeed_config_file: give that JSON file with --from to read its ZeRO settings")
        stage = as_int(r.get(f"{ds}.zero_stage"))
        r.use(f"{ds}.zero_stage", "parallelism.recipe", "deepspeed")
        r.request["parallelism"]["zero_stage"] = stage if stage in (0, 1, 2, 3) else 0
        for key, target in (("offload_optimizer_device", "offload_optimizer"), ("offload_param_device", "offload_params")):
            device = str(r.get(f"{ds}.{key}", "none")).lower()
            if device in ("cpu", "nvme"):
                r.use(f"{ds}.{key}", f"parallelism.{target}", device)
            elif r.has(f"{ds}.{key}"):
                r.consumed(f"{ds}.{key}")
        r.integer(f"{ds}.gradient_accumulation_steps", "parallelism.gradient_accumulation")
    elif kind == "FSDP":
        f = "fsdp_config"
        fsdp_layout(r, r.get(f"{f}.fsdp_sharding_strategy", "FULL_SHARD"), r.get(f"{f}.fsdp_offload_params"),
                    r.get(f"{f}.fsdp_version"), r.get(f"{f}.fsdp_reshard_after_forward"),
                    {"strategy": f"{f}.fsdp_sharding_strategy" if r.has(f"{f}.fsdp_sharding_strategy") else "distributed_type",
                     "offload": f"{f}.fsdp_offload_params", "version": f"{f}.fsdp_version",
                     "reshard": f"{f}.fsdp_reshard_after_forward"})
        if r.has(f"{f}.fsdp_activation_checkpointing"):
            r.flag(f"{f}.fsdp_activation_checkpointing", "workload.gradient_checkpointing")
    r.note("an accelerate config does not name the model or the batch: give --model (or --hf-config), "
           "--batch and --seq")
