"""A tied embedding's gradients in backward, against the real library (torch CPU, transformers): the output
layer's gradient of the shared weight waits in its AccumulateGrad's input buffer as a transposed view, so the
embedding's gradient is added out of place, a vocab x hidden tensor more beside the two addends
(pycore/training/timeline.py, the "embedding backward" moment; Static.tied_grad_sum)."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from torch.profiler import ProfilerActivity, profile  # noqa: E402

from pycore.training.static import static_states  # noqa: E402
from pycore.training.workload import Framework, Precision, Workload  # noqa: E402
from pycore.model.hfconfig import read_hf_config  # noqa: E402

V, H = 1_009, 96


def _config(tied: bool) -> dict:
    return {"model_type": "llama", "vocab_size": V, "hidden_size": H, "intermediate_size": 160,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "tie_word_embeddings": tied, "max_position_embeddings": 64}


def _vocab_sized_adds(tied: bool) -> list:
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.for_model(**_config(tied)), attn_implementation="eager")
    ids = torch.randint(0, V, (2, 17))
    loss = model(input_ids=ids, labels=ids).loss
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        loss.backward()
    return [e.cpu_memory_usage for e in prof.events() if e.name == "aten::add" and e.cpu_memory_usage >= V * H * 4]


def test_a_tied_embedding_adds_its_two_gradients_out_of_place():
    # fp32: one vocab x hidden x 4-byte tensor allocated by the add
    assert _vocab_sized_adds(True) == [V * H * 4]
    assert _vocab_sized_adds(False) == []


def test_the_core_counts_the_addend_and_the_sum_for_a_tied_model_only():
    for tied, expected in ((True, 2 * V * H * 4), (False, 0)):
        m = read_hf_config(_config(tied))
        st = static_states(m, Workload(mode="full", optimizer="sgd"), Precision(weights="fp32"), Framework())
        assert st.tied_grad_sum == expected
