"""`--from FILE` (pycore/runconfig): the projects' own example configs (tests/data/configs, sources in its
README) read into requests. Expected values are read by hand from each file."""

import json
from pathlib import Path

import pytest

from pycore.cli import main
from pycore.errors import InputError
from pycore.runconfig import read_run_config
from pycore.runconfig.yamltext import parse_yaml

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"
FILES = sorted(p.name for p in CONFIGS.iterdir() if p.suffix in (".yml", ".yaml", ".json"))


def read(name, **kw):
    return read_run_config((CONFIGS / name).read_text(), **kw)


@pytest.mark.parametrize("name", FILES)
def test_every_field_of_the_file_is_used_read_or_named_as_ignored(name):
    r = read(name)
    data = parse_yaml((CONFIGS / name).read_text(), "f")
    used = {u["field"] for u in r["used"]}
    reported = used | set(r["read_only"]) | set(r["ignored"])
    assert set(data) == {f.split(".")[0] for f in reported}
    assert not set(r["ignored"]) & (used | set(r["read_only"]))
    assert r["kind"] == name.split("-")[0]


def test_axolotl_lora_8b():
    req = read("axolotl-lora-8b.yml")["request"]
    # base_model NousResearch/Meta-Llama-3-8B, sequence_len 4096, micro_batch_size 2, accumulation 4,
    # adapter lora, lora_r 32, lora_alpha 16, lora_target_linear, bf16 auto, checkpointing, flash, adamw_bnb_8bit
    assert req == {"model": "meta-llama-3-8b",
                   "workload": {"seq_len": 4096, "batch_size": 2, "mode": "lora",
                                "lora": {"rank": 32, "alpha": 16, "targets": "all-linear"},
                                "gradient_checkpointing": True, "attention": "flash", "optimizer": "adamw_8bit"},
                   "parallelism": {"gradient_accumulation": 4}, "precision": {"weights": "bf16"}}
    r = read("axolotl-lora-8b.yml")
    assert "lora_modules_to_save" in r["ignored"] and "wandb_project" in r["ignored"]
    assert any("load_in_8bit" in n for n in r["notes"])


def test_axolotl_qlora_fsdp_70b_reads_the_fsdp_layout():
    req = read("axolotl-qlora-fsdp-70b.yaml")["request"]
    assert req["model"] == "meta-llama-3-70b"          # casperhansen/llama-3-70b-fp16
    assert req["workload"]["mode"] == "qlora" and req["workload"]["lora"]["rank"] == 8
    assert req["workload"]["optimizer"] == "adamw_fused"
    assert req["parallelism"] == {"gradient_accumulation": 4, "recipe": "fsdp2", "offload_params": "cpu",
                                  "offload_optimizer": "cpu"}


def test_torchtune_lora_single_device():
    r = read("torchtune-8B_lora_single_device.yaml")
    w = r["request"]["workload"]
    assert r["request"]["model"] == "llama-3.1-8b"
    # lora_attn_modules q_proj, v_proj, output_proj (-> o_proj) and apply_lora_to_mlp (gate, up, down)
    assert w["lora"] == {"rank": 8, "alpha": 16, "targets": ["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                             "down_proj"]}
    assert (w["mode"], w["batch_size"], w["gradient_checkpointing"], w["optimizer"]) == ("lora", 2, True, "adamw_fused")
    assert r["request"]["precision"] == {"weights": "bf16"}
    assert "profiler" in r["ignored"] and "loss" in r["ignored"]


def test_torchtune_full_reads_foreach_false_as_the_single_tensor_adamw():
    req = read("torchtune-8B_full.yaml")["request"]
    assert req["workload"]["optimizer"] == "adamw_single" and req["workload"]["mode"] == "full"


def test_llamafactory_defaults_and_its_deepspeed_file():
    r = read("llamafactory-llama3_lora_sft.yaml")
    # lora_rank not given: LLaMA-Factory's default 8, alpha 2 x rank; gradient checkpointing on by default
    assert r["request"]["model"] == "meta-llama-3-8b"
    assert r["request"]["workload"]["lora"] == {"rank": 8, "alpha": 16, "targets": "all-linear"}
    assert r["request"]["workload"]["gradient_checkpointing"] is True
    assert r["request"]["workload"]["seq_len"] == 1024
    ds = read("llamafactory-llama3_lora_sft_ds3.yaml",
              deepspeed_text=(CONFIGS / "deepspeed-ds_z3_config.json").read_text())
    assert ds["deepspeed_file"] == "examples/deepspeed/ds_z3_config.json"
    assert ds["request"]["parallelism"]["zero_stage"] == 3 and ds["request"]["parallelism"]["recipe"] == "deepspeed"
    assert ds["request"]["parallelism"]["gradient_accumulation"] == 2       # the YAML's, not DeepSpeed's "auto"
    assert any(f.startswith("examples/deepspeed/ds_z3_config.json:") for f in ds["ignored"])


def test_deepspeed_json_reads_stage_offload_and_buckets():
    p = read("deepspeed-ds_z2_offload_config.json")["request"]["parallelism"]
    assert p == {"recipe": "deepspeed", "zero_stage": 2, "offload_optimizer": "cpu",
                 "options": {"reduce_bucket_size": 500_000_000, "allgather_bucket_size": 500_000_000,
                             "overlap_comm": True}}


def test_accelerate_fsdp_configs():
    v1 = read("accelerate-fsdp_config.yaml")["request"]
    assert v1["parallelism"] == {"data_parallel": 2, "recipe": "fsdp2", "offload_params": "cpu",
                                 "offload_optimizer": "cpu"}
    assert v1["precision"] == {"weights": "fp32", "autocast": "bf16"}
    v2 = read("accelerate-fsdp2_config.yaml")
    assert v2["request"]["parallelism"] == {"data_parallel": 2, "recipe": "fsdp2"}
    assert "tpu_env" in v2["ignored"] and "fsdp_config.fsdp_state_dict_type" in v2["ignored"]


def test_an_unknown_file_is_refused():
    with pytest.raises(InputError, match="not a config this reader knows"):
        read_run_config("foo: 1\n")
    with pytest.raises(InputError, match="anchors"):
        read_run_config("base_model: &m x\n")


def test_cli_from_with_a_flag_that_overrides_the_file(capsys):
    path = str(CONFIGS / "axolotl-lora-8b.yml")
    assert main(["estimate", "--from", path, "--batch", "1", "--gpu", "rtx-4090-24gb", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["model"]["id"] == "meta-llama-3-8b"
    assert res["run_arguments"]["training_arguments"]["per_device_train_batch_size"] == 1   # the flag's
    assert res["run_arguments"]["training_arguments"]["gradient_accumulation_steps"] == 4   # the file's
    assert res["run_arguments"]["lora_config"] == {"r": 32, "lora_alpha": 16, "task_type": "CAUSAL_LM",
                                                   "target_modules": "all-linear"}
    assert "special_tokens" in res["from"]["ignored"]
    # the same run given by flags gives the same peak
    assert main(["estimate", "--model", "meta-llama-3-8b", "--mode", "lora", "--batch", "1", "--seq", "4096",
                 "--lora-rank", "32", "--lora-alpha", "16", "--lora-targets", "all-linear", "--checkpointing",
                 "--attention", "flash", "--optimizer", "adamw_8bit", "--grad-accum", "4", "--gpu", "rtx-4090-24gb",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["peak_allocated_bytes"] == res["peak_allocated_bytes"]


def test_cli_from_without_a_model_says_what_to_give(capsys):
    assert main(["estimate", "--from", str(CONFIGS / "accelerate-fsdp2_config.yaml")]) == 2
    assert "give --model" in capsys.readouterr().err
    assert main(["estimate", "--from", str(CONFIGS / "accelerate-fsdp2_config.yaml"), "--model", "llama-3.1-8b",
                 "--print-command"]) == 0
    out = capsys.readouterr()
    assert "fsdp_version: 2" in out.out and "num_processes: 2" in out.out and "used" in out.err


def test_axolotl_without_bf16_or_fp16_loads_fp32():
    r = read_run_config("base_model: meta-llama/Llama-3.1-8B\nmicro_batch_size: 1\nfp16: false\n")
    assert r["request"]["precision"] == {"weights": "fp32"} and r["read_only"] == ["fp16"]
    r = read_run_config("base_model: meta-llama/Llama-3.1-8B\nfloat16: true\n")
    assert r["request"]["precision"] == {"weights": "fp16"}


def test_the_page_box_turns_a_config_into_the_pages_link():
    from pycore.api import from_config
    base = {"schema": 1, "model": "qwen3-8b", "gpu": "rtx-4090-24gb", "workload": {"mode": "full", "seq_len": 512},
            "solve": True}
    out = json.loads(from_config(json.dumps({"text": (CONFIGS / "deepspeed-ds_z3_config.json").read_text(),
                                             "base": base})))
    assert out["status"] == "ok"
    # the page's model, GPU and length stay; the DeepSpeed file sets the recipe and ZeRO stage
    query = dict(part.split("=") for part in out["result"]["query"].split("&"))
    assert query == {"model": "qwen3-8b", "seq": "512", "recipe": "deepspeed", "zero": "3", "gpu": "rtx-4090-24gb"}
    assert out["result"]["not_on_page"] == ["parallelism.options.max_live_parameters",
                                            "parallelism.options.sub_group_size", "parallelism.options.overlap_comm"]
    axolotl = json.loads(from_config(json.dumps({"text": (CONFIGS / "axolotl-lora-8b.yml").read_text(), "base": base})))
    assert "model=meta-llama-3-8b" in axolotl["result"]["query"]


def test_the_page_box_refuses_with_the_field_never_raises():
    from pycore.api import from_config
    for body, field in (("{}", "from"), ("[1]", "from"), ('{"text": "a: &x 1"}', "from"), ("not json", "request"),
                        ('{"text": "base_model: gpt2\\nmicro_batch_size: 0\\n"}', "workload.batch_size")):
        out = json.loads(from_config(body))
        assert out["status"] == "error" and out["errors"][0]["field"] == field, (body, out)
