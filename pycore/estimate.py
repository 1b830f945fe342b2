"""Estimate one configuration: check it, then hand it to the workload's family (a training recipe,
or inference) and return the GPU's moments, peak and verdict."""

from __future__ import annotations

from dataclasses import replace
from importlib import import_module

from .errors import InputError
from .model.params import known_lora_module_names, lora_targets
from .model.spec import ModelSize, ModelSpec
from .parallel.hf import estimate_hf
from .model.layout import Parallelism, validate_layout
from .training.result import Estimate
from .serving.hf import estimate_inference
from .training.notes import lever_notes
from .training.vision import with_images
from .training.workload import Framework, Hardware, Precision, Workload, validate_framework, validate_workload

__all__ = ["Estimate", "estimate"]


# Training recipes by name: (module under pycore.parallel, function), imported on first use.
RECIPE_FUNCTIONS = {
    "deepspeed": ("deepspeed", "estimate_deepspeed"), "fsdp2": ("fsdp2", "estimate_fsdp2"),
    "megatron": ("megatron", "estimate_megatron"), "zero-paper": ("formulas", "estimate_zero_paper"),
    "deepspeed-estimator": ("formulas", "estimate_deepspeed_estimator"), "playbook": ("formulas", "estimate_playbook"),
}


def _recipe(name: str):
    if name == "hf":
        return estimate_hf
    module, function = RECIPE_FUNCTIONS[name]
    return getattr(import_module(f".parallel.{module}", __package__), function)


def _check_peft(m: ModelSpec, w: Workload, par: Parallelism) -> None:
    """Mode peft: the adapter must apply to this model (InputError naming the config's field)."""
    if w.mode != "peft":
        return
    if par.recipe != "hf":
        raise InputError("parallelism.recipe", "mode peft is modelled for recipe hf (one GPU, or DDP)")
    from .training.adapters import adapter_plan
    adapter_plan(m, w.peft_config)


def _check_lora_targets(m: ModelSpec, w: Workload) -> None:
    if w.mode in ("lora", "qlora") and not lora_targets(m, w.lora_targets):
        if w.lora_targets is None:
            raise InputError("workload.mode", "LoRA's default targets (the attention projections) match no linear "
                             "layer of this model; set workload.lora.targets to some of "
                             + ", ".join(known_lora_module_names(m)))
        raise InputError("workload.lora.targets", "matches no linear layer of this model; its linears are "
                         + ", ".join(known_lora_module_names(m)))


# Recipes that answer from a parameter count alone (the others follow the model's tensors).
SIZE_ONLY_RECIPES = ("zero-paper", "deepspeed-estimator", "playbook")


def estimate(m: ModelSpec | ModelSize, w: Workload, p: Precision, hw: Hardware, f: Framework = Framework(),
             par: Parallelism = Parallelism()) -> Estimate:
    validate_workload(w, p)
    validate_framework(f)
    m, w = with_images(m, w, f, par)            # image tokens join the sequence (training/vision.py)
    if isinstance(m, ModelSize):
        validate_layout(par, None, w)
        if w.mode != "full" or par.recipe not in SIZE_ONLY_RECIPES:
            raise InputError("model", "a model given by its parameter count answers model-state questions of full "
                                      "training with recipe " + ", ".join(SIZE_ONLY_RECIPES) + "; give its "
                                      "dimensions or config.json for the others")
        return _recipe(par.recipe)(m, w, p, hw, f, par)
    m = with_head(m, w, par)
    validate_layout(par, m, w)
    _check_lora_targets(m, w)
    _check_peft(m, w, par)
    warnings = list(m.warnings)
    total_len = w.seq_len + (w.new_tokens if w.mode == "inference" else 0)
    if total_len > m.max_positions:
        warnings.append(f"sequence of {total_len} tokens is longer than the model's max_position_embeddings "
                        f"({m.max_positions})")
    if w.mode != "inference":
        warnings += lever_notes(m, w, p, f)
        e = _recipe(par.recipe)(m, w, p, hw, f, par)
        return e if e.warnings == tuple(warnings) else _with_warnings(e, warnings)
    return estimate_inference(m, w, p, hw, f, warnings)


def with_head(m: ModelSpec, w: Workload, par: Parallelism) -> ModelSpec:
    """The model with the head the workload names (causal LM for decoders and masked LM for BERT unless
    another is named)."""
    if w.head == "auto":
        return m
    if w.head == "masked-lm" and m.family != "bert":
        raise InputError("workload.head", "a masked-LM head belongs to encoders (BERT); this model is a decoder")
    if w.head == "causal-lm" and m.family == "bert":
        raise InputError("workload.head", "BERT is an encoder: its language-modelling head is masked-lm")
    if w.head in ("causal-lm", "masked-lm"):
        return m
    if par.recipe != "hf":
        raise InputError("workload.head", "classification heads are modelled for recipe hf")
    if w.mode == "inference" and w.new_tokens:
        raise InputError("workload.head", "generating tokens needs a language-modelling head")
    return replace(m, head=w.head, num_labels=1 if w.head == "reward" else w.num_labels)


def _with_warnings(e: Estimate, warnings: list) -> Estimate:
    return replace(e, warnings=tuple(dict.fromkeys([*warnings, *e.warnings])))
