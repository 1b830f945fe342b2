"""A bounded fuzz of mode peft: any peft_type with plausible and hostile settings gives a result or an
error naming a field under workload.peft_config (or the workload), never an exception, and quickly."""

import json
import time

from hypothesis import HealthCheck, given, settings, strategies as st

from pycore.api import estimate
from pycore.training.peft_config import KNOBS, PEFT_TYPES

HOSTILE = st.sampled_from([0, -1, 10 ** 12, 2 ** 63, 1e300, -0.5, True, None, "", "x" * 600, "(a+)+$", ".*.*.*.*.*z",
                           "[", [], {}, [[1]], {"q_proj": "x"}, {"(": 2}, "all-linear", ["nope"], [-1, 10 ** 9]])
GOOD = st.sampled_from([1, 2, 4, 8, 16, 0.1, ["q_proj", "v_proj"], "all-linear", r".*\.(q|v)_proj", {"q_proj": 4},
                        [0, 1], "mini", "road_2", "MLP", "LSTM", False, True])
KEYS = sorted({k for knobs in KNOBS.values() for k, _, _ in knobs} |
              {"target_modules", "exclude_modules", "layers_to_transform", "layers_pattern", "modules_to_save",
               "layer_replication", "task_type", "base_model_name_or_path"})


@st.composite
def peft_requests(draw):
    kind = draw(st.sampled_from(PEFT_TYPES)) if draw(st.integers(0, 9)) else \
        draw(st.sampled_from(["lora", "NOT_A_TYPE", "", 3, None]))
    cfg = {"peft_type": kind}
    if draw(st.integers(0, 3)):
        cfg["target_modules"] = draw(st.sampled_from([["q_proj", "v_proj"], "all-linear", ["c_attn"], ["down_proj"]]))
    own = [k for k, _, _ in KNOBS.get(kind, ())] if isinstance(kind, str) else []
    for key in draw(st.lists(st.sampled_from(own or KEYS), max_size=4)):
        cfg[key] = draw(st.one_of(GOOD, GOOD, GOOD, HOSTILE))
    if draw(st.integers(0, 5)) == 0:
        cfg[draw(st.sampled_from(KEYS))] = draw(HOSTILE)
    workload = {"mode": "peft", "batch_size": draw(st.integers(1, 4)), "seq_len": draw(st.integers(1, 1024)),
                "peft_config": cfg if draw(st.integers(0, 19)) else draw(HOSTILE)}
    for key, values in (("loss_kernel", st.sampled_from(["liger-flce", "cut-cross-entropy", "nope"])),
                        ("activation_offload", st.sampled_from(["torchtune", "unsloth", 3])),
                        ("gradient_checkpointing", st.booleans()), ("packing", st.sampled_from(["sdpa-mask", "x"]))):
        if draw(st.integers(0, 4)) == 0:
            workload[key] = draw(values)
    model = draw(st.sampled_from(["llama-3.2-1b", "gpt2", "bert-base", "qwen3-30b-a3b", "gemma-2-2b"]))
    return {"model": model, "gpu": "h100-sxm-80gb", "workload": workload}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(peft_requests())
def test_any_peft_config_gives_a_result_or_names_a_field(req):
    start = time.process_time()
    out = json.loads(estimate(json.dumps(req)))
    assert time.process_time() - start < 1.0, req
    assert out["status"] in ("ok", "error"), out
    if out["status"] == "error":
        field = out["errors"][0]["field"]
        assert field.startswith("workload") or field in ("parallelism.recipe",), out
    else:
        assert out["result"]["params"]["trainable"] >= 0
