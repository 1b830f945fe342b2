"""The notes a training run's levers add (pycore/training/notes.py): what they assume that the estimate
cannot show."""

from pycore.request.parse import parse_request
from pycore.training.notes import lever_notes


def _notes(**workload):
    req = parse_request({"model": "llama-3.1-8b", "workload": {"mode": "lora", **workload}})
    return lever_notes(req.model, req.workload, req.precision, req.framework)


def test_no_lever_no_note():
    assert _notes() == []


def test_torch_compile_names_its_rule_and_that_it_is_unverified_on_a_gpu():
    (note,) = _notes(torch_compile=True)
    assert "compile-recomputes-pointwise" in note and "unverified against a GPU run" in note


def test_offloading_the_checkpointed_inputs_states_the_host_memory_they_take():
    # Unsloth keeps each layer's input on the host: 32 layers x 1 x 1024 tokens x 4096 x 2 bytes (bf16)
    # = 268,435,456 bytes = 0.25 GiB
    (note,) = _notes(batch_size=1, seq_len=1024, gradient_checkpointing=True, activation_offload="unsloth")
    assert note.startswith("activation offloading (unsloth) keeps 0.25 GiB of activations in pinned host memory")
