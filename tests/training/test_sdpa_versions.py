"""Before transformers ran a model's attention through torch's SDPA, it computed eager attention whatever
the request says: SDPA came with transformers 4.36.0 (LlamaSdpaAttention; 4.35.0 has none) and only with
torch 2.1.1 or later (import_utils.is_torch_sdpa_available), to BERT in 4.41.0 (BertSdpaSelfAttention) and
to GPT-2 and GPT-NeoX in 4.42.0 (read in the wheels of those versions)."""

import pytest

from pycore.api import estimate_dict
from pycore.data.catalog import catalog_model
from pycore.training.context import hf_runs_sdpa


@pytest.mark.parametrize("model, transformers, torch, sdpa", [
    ("llama-3.1-8b", (4, 35, 2), (2, 11, 0), False),
    ("llama-3.1-8b", (4, 36, 0), (2, 1, 1), True),
    ("llama-3.1-8b", (4, 36, 0), (2, 1, 0), False),     # transformers asks for torch >= 2.1.1
    ("llama-3.1-8b", (5, 17, 0), (1, 10, 0), False),    # no scaled_dot_product_attention before torch 2.0
    ("bert-large", (4, 40, 2), (2, 3, 0), False),
    ("bert-large", (4, 41, 0), (2, 3, 0), True),
    ("gpt2", (4, 41, 3), (2, 3, 0), False),
    ("gpt2", (4, 42, 0), (2, 3, 0), True),
])
def test_which_versions_run_sdpa(model, transformers, torch, sdpa):
    assert hf_runs_sdpa(catalog_model(model), transformers, torch) is sdpa


def _activations(torch: str, transformers: str, attention: str) -> int:
    resp = estimate_dict({"model": "bert-large", "gpu": {"memory_gib": 80},
                          "framework": {"torch": torch, "transformers": transformers},
                          "workload": {"mode": "full", "batch_size": 4, "seq_len": 512, "attention": attention}})
    assert resp["status"] == "ok", resp
    tree = resp["result"]["breakdown"]["children"][0]["children"]
    return next(c["bytes"] for c in tree if c["name"] == "activations")


def test_an_old_stack_keeps_eager_attention_s_scores():
    # torch 1.10 and transformers 4.16 (BertSelfAttention: softmax output, dropout mask, dropped
    # probabilities kept per layer): the activations are the eager ones even though sdpa was asked for
    old = _activations("1.10", "4.16", "sdpa")
    assert old == _activations("2.11", "5.17", "eager")
    # against SDPA, per layer (bf16): the 4 x 16 heads x 512 x 512 scores kept three times, softmax output
    # (2 B, BERT's softmax keeps the input dtype), dropout mask (1 B), dropped probabilities (2 B); less
    # SDPA's fp32 logsumexp (4 x 16 x 512 x 4 B), which eager does not keep
    assert old - _activations("2.11", "5.17", "sdpa") == 24 * (4 * 16 * 512 * 512 * 5 - 4 * 16 * 512 * 4)
