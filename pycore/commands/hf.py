"""The arguments that run an answer with the Hugging Face stack: TrainingArguments fields, the model's
from_pretrained keywords, peft's LoraConfig, bitsandbytes' BitsAndBytesConfig, and the DeepSpeed or
accelerate config its layout needs. Layouts that the HF stack does not launch (tensor, pipeline,
context or expert parallel; recipes megatron and playbook) get None here."""

from __future__ import annotations

import json

from ..model.params import default_lora_targets
from ..model.spec import ModelSpec
from ..model.layout import recompute_mode
from ..versions import version_tuple

# workload.optimizer -> TrainingArguments.optim (transformers/training_args.py OptimizerNames, 5.x).
HF_OPTIM = {"adamw": "adamw_torch", "adamw_fused": "adamw_torch_fused", "adamw_single": "adamw_torch",
            "adafactor_hf": "adafactor", "adamw_8bit": "adamw_bnb_8bit", "paged_adamw_8bit": "paged_adamw_8bit",
            "lion": "lion_32bit", "sgd": "sgd", "sgd_momentum": "sgd"}
_OPTIM_NOTES = {"adamw_single": "AdamW with foreach=False: TrainingArguments has no switch for it; pass "
                                "optimizers=(torch.optim.AdamW(model.parameters(), foreach=False), None) to the Trainer",
                "adafactor": "torch.optim.Adafactor is not a TrainingArguments optim; pass optimizers="
                             "(torch.optim.Adafactor(model.parameters()), None) to the Trainer",
                "sgd_momentum": "SGD with momentum: add optim_args=\"momentum=0.9\""}
_TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
_ATTN = {"sdpa": "sdpa", "flash": "flash_attention_2", "eager": "eager"}
_DS_RECIPES = ("deepspeed", "deepspeed-estimator", "zero-paper")
# TrainingArguments.fsdp as a list of FSDPOption names is deprecated and goes in transformers 5.20, where
# fsdp=True and fsdp_config carry everything (training_args.py, 5.25: _process_fsdp_args' warning).
FSDP_LIST_REMOVED = (5, 20, 0)


def hf_run_arguments(req) -> dict | None:
    """The HF stack's arguments for a parsed training request, or None where its layout is another
    framework's (the Megatron and torchtitan generators cover those)."""
    w, p, par = req.workload, req.precision, req.parallelism
    if w.mode not in ("full", "lora", "qlora"):
        return None
    if par.recipe in ("megatron", "playbook") or max(par.tensor_parallel, par.context_parallel,
                                                     par.expert_parallel) > 1:
        return None
    if par.pipeline_parallel > 1 and par.recipe != "hf":
        return None
    notes = []
    compute = p.compute()
    args = {"per_device_train_batch_size": w.batch_size, "gradient_accumulation_steps": par.gradient_accumulation,
            "gradient_checkpointing": recompute_mode(par, w.gradient_checkpointing) != "none",
            "bf16": compute == "bf16", "fp16": compute == "fp16", "optim": HF_OPTIM.get(w.optimizer, "adamw_torch")}
    if recompute_mode(par, w.gradient_checkpointing) == "selective":
        notes.append("selective recomputation has no TrainingArguments switch; gradient_checkpointing recomputes "
                     "whole layers")
    if w.optimizer in _OPTIM_NOTES:
        notes.append(_OPTIM_NOTES[w.optimizer])
    if w.optimizer == "sgd_momentum":
        args["optim_args"] = "momentum=0.9"
    model_kwargs = {"dtype": _TORCH_DTYPES[p.weights if p.weights in _TORCH_DTYPES else compute],
                    "attn_implementation": _ATTN[w.attention]}
    out = {"framework": "hf", "training_arguments": args, "model_kwargs": model_kwargs}
    if par.pipeline_parallel > 1:
        model_kwargs["device_map"] = "auto"
        notes.append(f"the layers are split over {par.pipeline_parallel} GPUs by device_map (one process)")
    if w.mode in ("lora", "qlora"):
        targets = w.lora_targets
        if targets is None:            # the estimate's default (model/params.py), written out: peft's own differs
            targets = default_lora_targets(req.model) if isinstance(req.model, ModelSpec) else None
        alpha = int(w.lora_alpha) if float(w.lora_alpha).is_integer() else w.lora_alpha
        out["lora_config"] = {"r": w.lora_rank, "lora_alpha": alpha, "task_type": "CAUSAL_LM"}
        if targets is not None:
            out["lora_config"]["target_modules"] = targets if isinstance(targets, str) else list(targets)
    if w.mode == "qlora":
        out["bnb_config"] = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
                             "bnb_4bit_use_double_quant": w.qlora_double_quant,
                             "bnb_4bit_compute_dtype": _TORCH_DTYPES[compute]}
    _layout(out, req, args, notes)
    out["notes"] = notes
    return out


def _layout(out: dict, req, args: dict, notes: list) -> None:
    par, p = req.parallelism, req.precision
    gpus = par.gpus
    mixed = p.autocast or ("no" if p.weights == "fp32" else p.weights)
    if par.recipe in _DS_RECIPES and (par.zero_stage or par.recipe == "deepspeed"):
        ds = deepspeed_config(par)
        args["deepspeed"] = "ds_config.json"
        out["deepspeed_config"] = ds
        out["accelerate_config"] = {"distributed_type": "DEEPSPEED", "num_processes": gpus, "mixed_precision": mixed,
                                    "deepspeed_config": {"deepspeed_config_file": "ds_config.json",
                                                         "zero3_init_flag": par.zero_stage == 3}}
    elif par.recipe == "fsdp2":
        o = par.options
        fsdp_config = {"version": 2, "reshard_after_forward": bool(getattr(o, "reshard_after_forward", True)),
                       "cpu_offload": par.offload_params != "none"}
        if _transformers(req) >= FSDP_LIST_REMOVED:
            args["fsdp"] = True
        else:
            args["fsdp"] = ["full_shard" if fsdp_config["reshard_after_forward"] else "shard_grad_op", "auto_wrap"] \
                + (["offload"] if fsdp_config["cpu_offload"] else [])
        args["fsdp_config"] = fsdp_config
        out["accelerate_config"] = {"distributed_type": "FSDP", "num_processes": gpus, "mixed_precision": mixed,
                                    "fsdp_config": {"fsdp_version": 2, "fsdp_offload_params": fsdp_config["cpu_offload"],
                                                    "fsdp_reshard_after_forward": fsdp_config["reshard_after_forward"],
                                                    "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP"}}
        if getattr(o, "shard_group", None):
            notes.append("HSDP (shard_group) is set on the device mesh; TrainingArguments has no field for it")
    elif gpus > 1:
        out["accelerate_config"] = {"distributed_type": "MULTI_GPU", "num_processes": gpus, "mixed_precision": mixed}
    if gpus > 1:
        nodes = -(-gpus // par.gpus_per_node)
        out["launch"] = (f"accelerate launch --config_file accelerate_config.yaml train.py" if nodes == 1 else
                         f"accelerate launch --config_file accelerate_config.yaml --num_machines {nodes} "
                         "--machine_rank RANK --main_process_ip HOST train.py")
    else:
        out["launch"] = "python train.py" if "deepspeed" not in args else "deepspeed --num_gpus 1 train.py"


def deepspeed_config(par) -> dict:
    """A DeepSpeed config for the layout; batch, accumulation and precision are "auto" (the HF Trainer
    fills them in from TrainingArguments)."""
    o = par.options
    zero = {"stage": par.zero_stage}
    if par.offload_optimizer != "none":
        zero["offload_optimizer"] = {"device": par.offload_optimizer, "pin_memory": True}
    if par.offload_params != "none":
        zero["offload_param"] = {"device": par.offload_params, "pin_memory": True}
    for field, key in (("reduce_bucket_size", "reduce_bucket_size"), ("allgather_bucket_size", "allgather_bucket_size"),
                       ("overlap_comm", "overlap_comm"), ("prefetch_bucket_size", "stage3_prefetch_bucket_size"),
                       ("max_live_parameters", "stage3_max_live_parameters"),
                       ("param_persistence_threshold", "stage3_param_persistence_threshold"),
                       ("sub_group_size", "sub_group_size")):
        value = getattr(o, field, None)
        if value is not None and (par.zero_stage == 3 or not key.startswith("stage3_")):
            zero[key] = value
    return {"train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
            "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"}, "zero_optimization": zero}


def _transformers(req) -> tuple:
    return version_tuple(req.framework.transformers, "framework.transformers", "a transformers version", "5.17")


def hf_script(run: dict) -> str:
    """``--print-command``: the Python and config files that run it, ready to copy."""
    lines = ["# Python (transformers, peft)"]
    if "bnb_config" in run:
        lines.append(f"quantization_config = BitsAndBytesConfig({_kwargs(run['bnb_config'], dtypes=True)})")
    model_kwargs = dict(run["model_kwargs"])
    extra = ", quantization_config=quantization_config" if "bnb_config" in run else ""
    lines.append(f"model = AutoModelForCausalLM.from_pretrained(MODEL, {_kwargs(model_kwargs, dtypes=True)}{extra})")
    if "lora_config" in run:
        lines.append(f"model = get_peft_model(model, LoraConfig({_kwargs(run['lora_config'])}))")
    lines.append(f"args = TrainingArguments(output_dir=OUTPUT_DIR, {_kwargs(run['training_arguments'])})")
    if "deepspeed_config" in run:
        lines += ["", "# ds_config.json", json.dumps(run["deepspeed_config"], indent=2)]
    if "accelerate_config" in run:
        lines += ["", "# accelerate_config.yaml"] + list(_yaml(run["accelerate_config"]))
    lines += ["", "# launch", run["launch"]]
    lines += [f"# note: {n}" for n in run.get("notes", [])]
    return "\n".join(lines)


def _kwargs(d: dict, dtypes: bool = False) -> str:
    parts = []
    for key, value in d.items():
        if dtypes and key in ("dtype", "bnb_4bit_compute_dtype"):
            parts.append(f"{key}=torch.{value}")
        else:
            parts.append(f"{key}={value!r}")
    return ", ".join(parts)


def _yaml(d: dict, indent: str = ""):
    for key, value in d.items():
        if isinstance(value, dict):
            yield f"{indent}{key}:"
            yield from _yaml(value, indent + "  ")
        else:
            yield f"{indent}{key}: {json.dumps(value)}"
