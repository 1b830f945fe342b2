"""The model types the hf recipe lets use tensor parallelism are those whose transformers configuration
declares a base_model_tp_plan (pycore/parallel/hf_tp_plans.py), checked against the installed library."""

import pytest

transformers = pytest.importorskip("transformers")

from pycore.parallel.hf_tp_plans import TP_PLAN_MODEL_TYPES, TRANSFORMERS_VERSION  # noqa: E402


def test_the_list_is_the_installed_transformers_own():
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    if transformers.__version__ != TRANSFORMERS_VERSION:
        pytest.skip(f"the list was read from transformers {TRANSFORMERS_VERSION}")
    with_plan = set()
    for model_type in list(CONFIG_MAPPING.keys()):
        try:
            cls = CONFIG_MAPPING[model_type]
        except Exception:            # an optional dependency missing for one config class
            continue
        if getattr(cls, "base_model_tp_plan", None):
            with_plan.add(model_type)
    assert with_plan == set(TP_PLAN_MODEL_TYPES)


def test_llama_has_a_plan_and_gpt2_has_none():
    from transformers import GPT2Config, LlamaConfig
    assert LlamaConfig.base_model_tp_plan and "llama" in TP_PLAN_MODEL_TYPES
    assert not getattr(GPT2Config, "base_model_tp_plan", None) and "gpt2" not in TP_PLAN_MODEL_TYPES
