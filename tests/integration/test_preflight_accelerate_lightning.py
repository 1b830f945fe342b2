"""Pre-flight in an accelerate loop and as a Lightning Callback, with the real libraries on the CPU."""

import lightning as L
import pytest
import torch
from accelerate import Accelerator
from transformers import AutoModelForCausalLM, LlamaConfig

from pycore.integrations import accelerate as pf_accelerate
from pycore.integrations.lightning import PreflightCallback, PreflightError

TINY = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64)


def tiny_model():
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(LlamaConfig(**TINY))


def batches(n=4, batch=2, length=16):
    ids = torch.randint(0, TINY["vocab_size"], (n * batch, length), generator=torch.Generator().manual_seed(0))
    data = [{"input_ids": row, "labels": row} for row in ids]
    return torch.utils.data.DataLoader(data, batch_size=batch)


def test_accelerate_preflight_reads_the_accelerator_optimizer_and_batch():
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    model, optimizer, loader = accelerator.prepare(tiny_model(), torch.optim.AdamW(tiny_model().parameters(),
                                                                                  foreach=False), batches())
    res = pf_accelerate.preflight(accelerator, model, optimizer, next(iter(loader)), gpu="rtx-4090-24gb")
    req = res["request"]
    assert (req["workload"]["batch_size"], req["workload"]["seq_len"]) == (2, 16)
    assert req["workload"]["optimizer"] == "adamw_single"            # foreach=False
    assert req["parallelism"] == {"gradient_accumulation": 2}
    assert res["verdict"] == "fits"
    assert res["params"]["total"] == sum(p.numel() for p in model.parameters())


def test_accelerate_preflight_stops_a_run_that_does_not_fit():
    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(tiny_model())
    with pytest.raises(pf_accelerate.PreflightError, match="largest terms"):
        pf_accelerate.preflight(accelerator, model, None, {"input_ids": torch.zeros(8, 64, dtype=torch.long)},
                                gpu=2 ** 20)
    with pytest.warns(UserWarning, match="does not fit"):
        pf_accelerate.preflight(accelerator, model, None, {"input_ids": torch.zeros(8, 64, dtype=torch.long)},
                                gpu=2 ** 20, on_risk="warn")


class Module(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.model = tiny_model()

    def training_step(self, batch, batch_idx):
        return self.model(**batch).loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def trainer(callback):
    return L.Trainer(accelerator="cpu", max_steps=1, callbacks=[callback], logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, accumulate_grad_batches=1)


def test_lightning_callback_checks_the_first_batch_and_training_goes_on():
    callback = PreflightCallback(gpu="rtx-4090-24gb")
    t = trainer(callback)
    t.fit(Module(), batches())
    assert t.global_step == 1
    w = callback.result["request"]["workload"]
    assert (w["batch_size"], w["seq_len"], w["optimizer"]) == (2, 16, "sgd_momentum")


def test_lightning_callback_stops_before_step_one():
    module = Module()
    before = [p.detach().clone() for p in module.parameters()]
    t = trainer(PreflightCallback(gpu=2 ** 20))
    with pytest.raises(PreflightError, match="does not fit"):
        t.fit(module, batches())
    assert t.global_step == 0
    assert all(torch.equal(a, b) for a, b in zip(before, module.parameters()))
