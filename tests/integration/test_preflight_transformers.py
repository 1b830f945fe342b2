"""Pre-flight inside the HF Trainer, against the real transformers, peft and accelerate (the integration
lane: .venv-int). Expected values come from the libraries themselves (parameter counts), from the command
line estimating the same run, or from the issue's cases (8B full training on a 24 GB card cannot fit:
16 GB of bf16 weights plus 32 GB of AdamW states)."""

import json
import subprocess
import sys
from pathlib import Path

import peft
import pytest
import torch
import transformers
from accelerate import init_empty_weights
from transformers import AutoModelForCausalLM, LlamaConfig, Trainer, TrainingArguments

from pycore.integrations.common import full_numel, model_part
from pycore.integrations.transformers import PreflightCallback, PreflightError, preflight

ROOT = Path(__file__).resolve().parents[2]
# Llama-3.1-8B's config.json (meta-llama/Llama-3.1-8B): its dimensions, written out by hand
LLAMA_8B = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=131072, rope_theta=500000.0,
                rms_norm_eps=1e-5, tie_word_embeddings=False)
VERSIONS = ["--torch-version", torch.__version__.split("+")[0], "--transformers-version", transformers.__version__,
            "--peft-version", peft.__version__]


def llama_8b_on_meta():
    with init_empty_weights():
        return AutoModelForCausalLM.from_config(LlamaConfig(**LLAMA_8B), dtype=torch.bfloat16)


def args(tmp_path, **kw):
    return TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], save_strategy="no", **kw)


def cli(*flags) -> dict:
    out = subprocess.run([sys.executable, "-m", "pycore", "estimate", *flags, "--json"], cwd=ROOT, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


def test_llama_8b_full_training_on_a_4090_stops_with_the_breakdown_and_a_plan(tmp_path):
    model = llama_8b_on_meta()
    with pytest.raises(PreflightError) as exc:
        preflight(args(tmp_path, per_device_train_batch_size=4, optim="adamw_torch"), model, seq_len=4096,
                  gpu="rtx-4090-24gb")
    message = str(exc.value)
    assert isinstance(exc.value, RuntimeError)
    assert "does not fit" in message and "largest terms: activations" in message and "optimizer states" in message
    assert "make it fit:" in message and "TrainingArguments: per_device_train_batch_size=" in message
    res = exc.value.result
    assert res["verdict"] == "does not fit"
    # the config the estimator read counts the parameters torch counts on the meta model
    assert res["params"]["total"] == sum(p.numel() for p in model.parameters()) == 8_030_261_248
    w = res["request"]["workload"]
    assert (w["mode"], w["batch_size"], w["seq_len"], w["optimizer"]) == ("full", 4, 4096, "adamw")
    assert res["request"]["precision"] == {"weights": "bf16"}
    # more than 16 GB of bf16 weights and 32 GB of AdamW states (2 + 4 bytes a parameter): 48 GB > 24 GB
    assert res["model_states_bytes"] >= 6 * 8_030_261_248


def test_llama_8b_lora_with_checkpointing_passes_and_matches_the_command_line(tmp_path):
    model = llama_8b_on_meta()
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
    model = peft.get_peft_model(model, peft.LoraConfig(r=16, lora_alpha=32, target_modules=targets))
    res = preflight(args(tmp_path, per_device_train_batch_size=1, gradient_checkpointing=True), model,
                    seq_len=1024, gpu="rtx-4090-24gb")
    assert res["verdict"] == "fits" and res["request"]["workload"]["mode"] == "lora"
    # peft's own count of what it trains
    assert res["params"]["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    same = cli("--model", "llama-3.1-8b", "--mode", "lora", "--batch", "1", "--seq", "1024", "--checkpointing",
               "--lora-rank", "16", "--lora-alpha", "32", "--lora-targets", ",".join(targets),
               "--optimizer", "adamw_fused",                  # TrainingArguments' default optim in 5.x
               "--gpu", "rtx-4090-24gb", *VERSIONS)
    assert res["peak_allocated_bytes"] == same["peak_allocated_bytes"]
    assert res["device_total_bytes"] == same["device_total_bytes"]


def test_zero3_parameters_are_counted_by_their_full_shapes(tmp_path):
    model = AutoModelForCausalLM.from_config(LlamaConfig(**{**LLAMA_8B, "num_hidden_layers": 2, "hidden_size": 256,
                                                            "intermediate_size": 512, "num_attention_heads": 4,
                                                            "num_key_value_heads": 2, "vocab_size": 1000}))
    full = sum(p.numel() for p in model.parameters())
    for p in model.parameters():        # what deepspeed.zero.Init leaves on a rank: an empty shard, ds_shape
        p.ds_shape = p.shape
        p.data = torch.empty(0, dtype=p.dtype)
    assert sum(p.numel() for p in model.parameters()) == 0
    assert sum(full_numel(p) for p in model.parameters()) == full
    assert model_part(model, [])["parameters"] == full


def test_a_deepspeed_zero3_run_is_estimated_as_the_command_line_does(tmp_path):
    a = args(tmp_path, per_device_train_batch_size=2, gradient_accumulation_steps=4, bf16=True)
    a.deepspeed = {"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}},
                   "bf16": {"enabled": "auto"}, "train_micro_batch_size_per_gpu": "auto"}
    res = preflight(a, llama_8b_on_meta(), seq_len=2048, gpu="h100-sxm-80gb")
    par = res["request"]["parallelism"]
    assert (par["recipe"], par["zero_stage"], par["offload_optimizer"], par["gradient_accumulation"]) == \
        ("deepspeed", 3, "cpu", 4)
    same = cli("--model", "llama-3.1-8b", "--batch", "2", "--seq", "2048", "--optimizer", "adamw_fused",
               "--recipe", "deepspeed", "--zero", "3", "--offload-optimizer", "cpu", "--grad-accum", "4",
               "--gpu", "h100-sxm-80gb", *VERSIONS)
    assert res["device_total_bytes"] == same["device_total_bytes"]


def test_an_fsdp_run_reads_the_sharding_from_training_arguments(tmp_path):
    res = preflight(args(tmp_path, per_device_train_batch_size=1, fsdp="shard_grad_op auto_wrap"),
                    llama_8b_on_meta(), seq_len=1024, gpu="h100-sxm-80gb", on_risk="warn")
    par = res["request"]["parallelism"]
    assert par["recipe"] == "fsdp2" and par["options"] == {"reshard_after_forward": False}


def test_gpu_auto_without_cuda_says_what_to_give(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(ValueError, match="gpu='auto'.*torch sees none"):
        preflight(args(tmp_path), llama_8b_on_meta(), seq_len=128)


TINY = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64)


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n=8, length=24):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, TINY["vocab_size"], (n, length), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def tiny_trainer(tmp_path, callback):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**TINY))
    return Trainer(model=model, args=args(tmp_path, per_device_train_batch_size=2, max_steps=1, logging_strategy="no"),
                   train_dataset=Tokens(), callbacks=[callback])


def test_a_real_trainer_runs_one_step_with_the_callback(tmp_path):
    callback = PreflightCallback(gpu=8 * 2 ** 30)
    trainer = tiny_trainer(tmp_path, callback)
    trainer.train()
    assert trainer.state.global_step == 1
    w = callback.result["request"]["workload"]
    assert (w["batch_size"], w["seq_len"]) == (2, 24)         # the length of the first batch
    assert callback.result["verdict"] == "fits"
    assert callback.result["params"]["total"] == sum(p.numel() for p in trainer.model.parameters())


def test_the_callback_stops_a_run_that_does_not_fit_before_step_one(tmp_path):
    trainer = tiny_trainer(tmp_path, PreflightCallback(gpu=2 ** 20))       # a 1 MiB GPU
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(PreflightError, match="does not fit"):
        trainer.train()
    assert trainer.state.global_step == 0
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_a_4bit_base_with_lora_is_read_as_qlora(tmp_path):
    model = llama_8b_on_meta()
    # what from_pretrained(quantization_config=BitsAndBytesConfig(load_in_4bit=True, ...)) records on the config
    # (bitsandbytes itself does not run on this CPU-only lane)
    model.config.quantization_config = {"quant_method": "bitsandbytes", "load_in_4bit": True,
                                        "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True}
    model = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    res = preflight(args(tmp_path, per_device_train_batch_size=2, gradient_checkpointing=True), model,
                    seq_len=2048, gpu="rtx-4090-24gb")
    assert res["request"]["workload"]["mode"] == "qlora" and res["request"]["workload"]["qlora_double_quant"]
    same = cli("--model", "llama-3.1-8b", "--mode", "qlora", "--batch", "2", "--seq", "2048", "--checkpointing",
               "--lora-rank", "8", "--lora-alpha", "16", "--lora-targets", "q_proj,v_proj", "--optimizer", "adamw_fused",
               "--gpu", "rtx-4090-24gb", *VERSIONS)
    assert res["peak_allocated_bytes"] == same["peak_allocated_bytes"]


def test_a_deepspeed_config_given_as_a_path_is_read(tmp_path):
    path = ROOT / "tests" / "data" / "configs" / "deepspeed-ds_z2_offload_config.json"
    a = args(tmp_path, per_device_train_batch_size=1)
    a.deepspeed = str(path)
    res = preflight(a, llama_8b_on_meta(), seq_len=1024, gpu="h100-sxm-80gb", on_risk="warn")
    par = res["request"]["parallelism"]
    assert (par["zero_stage"], par["offload_optimizer"], par["options"]["reduce_bucket_size"]) == (2, "cpu", 500_000_000)


def test_reading_the_first_batch_leaves_the_random_state_as_it_was(tmp_path):
    import random
    from pycore.integrations.transformers import first_batch_length
    loader = torch.utils.data.DataLoader(Tokens(), batch_size=2, shuffle=True,
                                         collate_fn=lambda xs: {"input_ids": torch.stack([x["input_ids"] for x in xs])
                                                                + torch.randint(0, 2, (1,)) * random.randint(0, 0)})
    torch.manual_seed(1)
    random.seed(1)
    expected = (torch.rand(3), random.random())
    torch.manual_seed(1)
    random.seed(1)
    assert first_batch_length(loader, 2) == 24
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]
