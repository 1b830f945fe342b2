"""The arguments that run an answer, by framework: the HF stack (TrainingArguments, accelerate and
DeepSpeed configs) in hf.py; each framework's generator is its own module."""

from __future__ import annotations

from dataclasses import replace


def run_arguments(req) -> dict | None:
    """The arguments that run a parsed training request, or None where no generator covers its layout."""
    from .hf import hf_run_arguments
    return hf_run_arguments(req)


def plan_run_arguments(req, changes: dict, workload, precision) -> dict | None:
    """The arguments of a "make it fit" plan: the request with the plan's workload, precision and the
    parallelism fields it sets (``changes`` is the plan's "set", keyed by request path)."""
    from ..parallel.options import RECIPE_OPTIONS
    par_fields = {k.split(".", 1)[1]: v for k, v in changes.items()
                  if k.startswith("parallelism.") and "." not in k.split(".", 1)[1]}
    par = replace(req.parallelism, **par_fields)
    if par.recipe != req.parallelism.recipe:
        par = replace(par, options=RECIPE_OPTIONS[par.recipe]())
    return run_arguments(replace(req, workload=workload, precision=precision, parallelism=par))
