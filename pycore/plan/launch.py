"""A layout in the framework's own terms: the arguments a user passes to launch it.

- megatron: pretrain_gpt.py flags (megatron/training/arguments.py @d98e8a64);
- fsdp2: a torchtitan TOML fragment (torchtitan/config/job_config.py @4a950ea: [parallelism],
  [training], [activation_checkpoint]);
- deepspeed and the formula recipes: a DeepSpeed config (docs/_pages/config-json.md: ZeRO stage,
  offload, micro-batch, accumulation) with the pipeline and AutoTP degrees;
- hf: an accelerate launch (num_processes, FSDP or DeepSpeed plugin) and the from_pretrained
  arguments for a device_map split or a tensor-parallel plan (tp_plan="auto").
"""

from __future__ import annotations

import json
import shlex

from ..model.layout import Parallelism, chunk_layers
from ..parallel.stages import megatron_split_flags

AC_MODES = {"none": "none", "selective": "selective", "full": "full"}


def launch(req, par: Parallelism, micro: int, accumulation: int) -> dict:
    """{"framework", "format", "text", "arguments"} for one layout."""
    makers = {"megatron": _megatron, "fsdp2": _torchtitan, "hf": _accelerate}
    return makers.get(par.recipe, _deepspeed)(req, par, micro, accumulation)


def _global_batch(par: Parallelism, micro: int, accumulation: int) -> int:
    return micro * accumulation * par.data_parallel * par.expert_parallel


def _megatron(req, par: Parallelism, micro: int, accumulation: int) -> dict:
    m, w = req.model, req.workload
    args: dict = {"--num-layers": m.n_layers, "--seq-length": w.seq_len, "--micro-batch-size": micro,
                  "--global-batch-size": _global_batch(par, micro, accumulation),
                  "--tensor-model-parallel-size": par.tensor_parallel,
                  "--pipeline-model-parallel-size": par.pipeline_parallel,
                  "--context-parallel-size": par.context_parallel, "--expert-model-parallel-size": par.expert_parallel}
    if m.n_experts and par.expert_tensor_parallel is not None:
        args["--expert-tensor-parallel-size"] = par.expert_tensor_parallel
    chunks = chunk_layers(par, m.n_layers)
    split = megatron_split_flags(chunks, par.virtual_stages) if len(set(chunks)) > 1 else {}
    if par.virtual_stages > 1 and "--pipeline-model-parallel-layout" not in split:
        args["--num-virtual-stages-per-pipeline-rank"] = par.virtual_stages
    args.update(split)
    if par.sequence_parallel:
        args["--sequence-parallel"] = True
    if par.zero_stage >= 1:
        args["--use-distributed-optimizer"] = True
    recompute = par.recompute or "none"
    if recompute != "none":
        args["--recompute-granularity"] = recompute
    if recompute == "full":
        args["--recompute-method"] = "uniform"
        args["--recompute-num-layers"] = par.recompute_layers
    if req.precision.compute() in ("bf16", "fp16"):
        args["--" + req.precision.compute()] = True
    o = par.options
    dtypes = {f"--{k.replace('_', '-')}": getattr(o, k) for k in
              ("main_grads_dtype", "main_params_dtype", "exp_avg_dtype", "exp_avg_sq_dtype") if o is not None}
    if any(v != "fp32" for v in dtypes.values()):
        args["--use-precision-aware-optimizer"] = True
        args.update({k: v for k, v in dtypes.items() if v != "fp32"})
    text = " ".join(k if v is True else f"{k} {shlex.quote(str(v))}" for k, v in args.items())
    return {"framework": "Megatron-LM (pretrain_gpt.py)", "format": "flags", "text": text, "arguments": args}


def _torchtitan(req, par: Parallelism, micro: int, accumulation: int) -> dict:
    m, w = req.model, req.workload
    o = par.options
    shard = getattr(o, "shard_group", None) or par.data_parallel
    replicate = par.data_parallel // shard
    parallelism = {"data_parallel_replicate_degree": replicate, "data_parallel_shard_degree": shard,
                   "tensor_parallel_degree": par.tensor_parallel, "pipeline_parallel_degree": par.pipeline_parallel,
                   "context_parallel_degree": par.context_parallel, "expert_parallel_degree": par.expert_parallel}
    training = {"local_batch_size": micro * (accumulation if par.pipeline_parallel > 1 else 1), "seq_len": w.seq_len,
                "global_batch_size": _global_batch(par, micro, accumulation)}
    if par.pipeline_parallel > 1:
        parallelism["pipeline_parallel_schedule"] = "Interleaved1F1B" if par.virtual_stages > 1 else "1F1B"
        parallelism["pipeline_parallel_microbatch_size"] = micro
        if par.pipeline_layers is not None:
            parallelism["module_fqns_per_model_part"] = _fqns(par.pipeline_layers)
    ac = {"mode": AC_MODES[par.recompute or "none"]}
    if par.recompute == "selective":
        ac["selective_ac_option"] = "op"
    sections = {"parallelism": parallelism, "training": training, "activation_checkpoint": ac}
    if getattr(o, "compile", False):
        sections["compile"] = {"enable": True, "components": ["model", "loss"]}
    if getattr(o, "async_tensor_parallel", False) and par.tensor_parallel > 1:
        parallelism["enable_async_tensor_parallel"] = True
    text = "\n".join(f"[{name}]\n" + "\n".join(f"{k} = {_toml(v)}" for k, v in body.items()) + "\n"
                     for name, body in sections.items())
    return {"framework": "torchtitan", "format": "toml", "text": text, "arguments": sections}


def _fqns(chunks) -> list:
    """torchtitan's module_fqns_per_model_part for a given split."""
    out, start = [], 0
    for i, n in enumerate(chunks):
        names = [f"layers.{j}" for j in range(start, start + n)]
        if i == 0:
            names = ["tok_embeddings"] + names
        if i == len(chunks) - 1:
            names = names + ["norm", "output"]
        out.append(names)
        start += n
    return out


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v)


def _ds_config(req, par: Parallelism, micro: int, accumulation: int) -> dict:
    cfg: dict = {"train_micro_batch_size_per_gpu": micro, "gradient_accumulation_steps": accumulation,
                 "zero_optimization": {"stage": par.zero_stage}}
    if req.precision.compute() in ("bf16", "fp16"):
        cfg[req.precision.compute()] = {"enabled": True}
    if par.offload_optimizer != "none":
        cfg["zero_optimization"]["offload_optimizer"] = {"device": par.offload_optimizer}
    if par.offload_params != "none":
        cfg["zero_optimization"]["offload_param"] = {"device": par.offload_params}
    if par.tensor_parallel > 1:
        cfg["tensor_parallel"] = {"autotp_size": par.tensor_parallel}
    if par.recompute in ("selective", "full"):
        cfg["activation_checkpointing"] = {"partition_activations": par.tensor_parallel > 1}
    return cfg


def _deepspeed(req, par: Parallelism, micro: int, accumulation: int) -> dict:
    cfg = _ds_config(req, par, micro, accumulation)
    extra = {}
    if par.pipeline_parallel > 1:
        extra["PipelineModule"] = {"num_stages": par.pipeline_parallel, "partition_method": "uniform",
                                   "activation_checkpoint_interval": 1 if par.recompute == "full" else 0}
    text = json.dumps(cfg, indent=1)
    if extra:
        text += "\n# deepspeed.pipe.PipelineModule(" + ", ".join(
            f"{k}={v!r}" for k, v in extra["PipelineModule"].items()) + ")"
    return {"framework": "DeepSpeed", "format": "json", "text": text, "arguments": {"config": cfg, **extra}}


def _accelerate(req, par: Parallelism, micro: int, accumulation: int) -> dict:
    """accelerate launch flags (accelerate/commands/launch.py @1.16.0: --use_deepspeed --zero_stage,
    --parallelism_config_* sizes) and the from_pretrained arguments (tp_plan, device_map)."""
    procs = par.data_parallel * par.tensor_parallel
    flags: dict = {"--num_processes": procs, "--gradient_accumulation_steps": accumulation,
                   "--mixed_precision": req.precision.compute() if req.precision.compute() != "fp32" else "no"}
    pretrained: dict = {}
    if par.zero_stage:
        flags["--use_deepspeed"] = True
        flags["--zero_stage"] = par.zero_stage
    elif procs > 1:
        flags["--multi_gpu"] = True
    if par.tensor_parallel > 1:
        flags["--parallelism_config_dp_replicate_size"] = par.data_parallel
        flags["--parallelism_config_tp_size"] = par.tensor_parallel
        pretrained["tp_plan"] = "auto"
    if par.pipeline_parallel > 1:
        # device_map runs the layers on the GPUs one after another: not pipeline parallelism
        pretrained["device_map"] = "auto"
        pretrained["max_memory"] = f"one entry for each of the {par.pipeline_parallel} GPUs a process uses"
    if par.recompute == "full":
        pretrained["gradient_checkpointing"] = "model.gradient_checkpointing_enable()"
    text = "accelerate launch " + " ".join(k if v is True else f"{k} {v}" for k, v in flags.items())
    if pretrained:
        text += "\nfrom_pretrained(" + ", ".join(f"{k}={v!r}" for k, v in pretrained.items()) + ")"
    return {"framework": "accelerate / transformers", "format": "accelerate", "text": text,
            "arguments": {"accelerate": flags, "from_pretrained": pretrained,
                          "per_device_train_batch_size": micro}}
