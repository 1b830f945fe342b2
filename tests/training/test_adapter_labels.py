"""The activation part that holds the adapters' input copies names the adapter type as peft names it (issue 22),
and keeps the breakdown's key: it sits under the activations category (key "activations", data/terms.json)."""

import pytest

from pycore.api import estimate_dict
from pycore.data.catalog import term_key


def _activation_parts(workload: dict) -> dict:
    r = estimate_dict({"model": "llama-3.2-1b", "workload": {"batch_size": 1, "seq_len": 512, **workload}})
    assert r["status"] == "ok", r
    peak = next(c for c in r["result"]["breakdown"]["children"] if c["key"] == "peak")
    acts = next(c for c in peak["children"] if c["name"] == "activations")
    assert acts["key"] == "activations"
    return {c["name"]: c for c in acts["children"]}


# Llama 3.2 1B: 16 layers, hidden 2048, MLP 8192; 512 tokens; adapters in fp32 (4 B).
CASES = [
    # IA3's default llama targets are k_proj, v_proj and down_proj; only the feed-forward down_proj keeps
    # x.to(fp32): 16 x 512 x 8192 x 4 B
    ("IA3 inputs in the adapters' dtype", {"peft_type": "IA3"}, 16 * 512 * 8192 * 4),
    # LoHa on q_proj and v_proj: both keep x.to(fp32) of the 2048-wide norm output, 2 x 16 x 512 x 2048 x 4 B
    ("LoHa inputs in the adapters' dtype", {"peft_type": "LOHA", "r": 8, "target_modules": ["q_proj", "v_proj"]},
     2 * 16 * 512 * 2048 * 4),
    # DoRA (LoRA with use_dora) on q_proj and v_proj: lora_A's casts, the same 2 x 16 x 512 x 2048 x 4 B
    ("DoRA inputs in the adapters' dtype", {"peft_type": "LORA", "r": 8, "use_dora": True,
                                            "target_modules": ["q_proj", "v_proj"]}, 2 * 16 * 512 * 2048 * 4),
    ("LoRA inputs in the adapters' dtype", {"peft_type": "LORA", "r": 8, "target_modules": ["q_proj", "v_proj"]},
     2 * 16 * 512 * 2048 * 4),
]


@pytest.mark.parametrize("label, config, expected", CASES, ids=[c[0].split()[0] for c in CASES])
def test_the_input_copies_are_named_for_the_adapter_type(label, config, expected):
    parts = _activation_parts({"mode": "peft", "peft_config": config})
    assert parts[label]["bytes"] == expected
    assert not [n for n in parts if "inputs in the adapters' dtype" in n and n != label]


def test_the_lora_mode_keeps_its_label_and_no_label_gets_a_key_of_its_own():
    parts = _activation_parts({"mode": "lora", "lora": {"targets": ["q_proj", "v_proj"]}})
    assert parts["LoRA inputs in the adapters' dtype"]["bytes"] == 2 * 16 * 512 * 2048 * 4
    # a part's key comes from its name before any parenthesis (catalog.term_key): none, before and after
    for label, _, _ in CASES:
        assert term_key(label) == "" and "key" not in parts.get(label, {})
