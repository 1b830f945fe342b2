"""The arguments that run an answer with the HF stack (pycore/commands/hf.py), in every training result
and every "make it fit" plan; ``--print-command`` on the command line."""

from pycore.api import estimate_dict
from pycore.cli import main


def result(**parts):
    req = {"model": "llama-3.1-8b", "gpu": "h100-sxm-80gb", **parts}
    resp = estimate_dict(req)
    assert resp["status"] == "ok", resp
    return resp["result"]


def test_a_lora_run_gives_its_training_arguments_and_adapter():
    run = result(workload={"mode": "lora", "batch_size": 2, "seq_len": 1024, "gradient_checkpointing": True,
                           "optimizer": "adamw_fused", "lora": {"rank": 8, "alpha": 16}},
                 parallelism={"gradient_accumulation": 4})["run_arguments"]
    assert run["training_arguments"] == {"per_device_train_batch_size": 2, "gradient_accumulation_steps": 4,
                                         "gradient_checkpointing": True, "bf16": True, "fp16": False,
                                         "optim": "adamw_torch_fused"}
    # the estimate's default targets, written out (peft's own default for Llama is q_proj, v_proj only)
    assert run["lora_config"] == {"r": 8, "lora_alpha": 16, "task_type": "CAUSAL_LM",
                                  "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
    assert run["model_kwargs"] == {"dtype": "bfloat16", "attn_implementation": "sdpa"}
    assert run["launch"] == "python train.py"


def test_mixed_precision_is_fp32_weights_with_bf16():
    run = result(workload={"mode": "full"}, precision={"weights": "fp32", "autocast": "bf16"})["run_arguments"]
    assert run["model_kwargs"]["dtype"] == "float32" and run["training_arguments"]["bf16"] is True


def test_zero3_offload_gives_a_deepspeed_config_and_an_accelerate_launch():
    run = result(workload={"mode": "full"}, parallelism={"recipe": "deepspeed", "zero_stage": 3, "data_parallel": 8,
                                                         "offload_optimizer": "cpu"})["run_arguments"]
    zero = run["deepspeed_config"]["zero_optimization"]
    assert zero["stage"] == 3 and zero["offload_optimizer"]["device"] == "cpu" and "offload_param" not in zero
    assert run["training_arguments"]["deepspeed"] == "ds_config.json"
    assert run["accelerate_config"]["num_processes"] == 8
    assert run["accelerate_config"]["distributed_type"] == "DEEPSPEED"
    assert run["launch"].startswith("accelerate launch")


def test_fsdp2_by_the_transformers_version():
    par = {"recipe": "fsdp2", "data_parallel": 4, "options": {"reshard_after_forward": False}}
    new = result(workload={"mode": "full"}, parallelism=par, framework={"transformers": "5.25"})["run_arguments"]
    assert new["training_arguments"]["fsdp"] is True
    assert new["training_arguments"]["fsdp_config"] == {"version": 2, "reshard_after_forward": False,
                                                        "cpu_offload": False}
    old = result(workload={"mode": "full"}, parallelism=par, framework={"transformers": "4.57"})["run_arguments"]
    assert old["training_arguments"]["fsdp"] == ["shard_grad_op", "auto_wrap"]


def test_megatron_layouts_are_left_to_their_own_generator():
    res = result(workload={"mode": "full"}, parallelism={"recipe": "megatron", "tensor_parallel": 2})
    assert "run_arguments" not in res
    assert "run_arguments" not in result(workload={"mode": "inference"})


def test_every_fit_plan_carries_its_arguments():
    res = estimate_dict({"model": "llama-3.1-8b", "gpu": "rtx-4090-24gb", "workload": {"mode": "full", "batch_size": 4,
                                                                                      "seq_len": 4096},
                         "fit": {"limit": 3}})["result"]
    for plan in res["fit"]["plans"]:
        args = plan["run_arguments"]["training_arguments"]
        assert args["per_device_train_batch_size"] == plan["set"].get("workload.batch_size", 4)
        assert args["gradient_checkpointing"] == plan["set"].get("workload.gradient_checkpointing", False)


def test_print_command(capsys):
    assert main(["estimate", "--model", "llama-3.1-8b", "--mode", "qlora", "--batch", "2", "--print-command"]) == 0
    out = capsys.readouterr().out
    assert "BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4'" in out
    assert "TrainingArguments(output_dir=OUTPUT_DIR, per_device_train_batch_size=2" in out
    assert main(["estimate", "--model", "llama-3.1-8b", "--tp", "2", "--recipe", "megatron", "--print-command"]) == 2
