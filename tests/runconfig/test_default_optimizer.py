"""An optimizer the config leaves unset takes the tool's own default, read from its source: axolotl 0.19
sets adamw_torch_fused itself (src/axolotl/utils/schemas/training.py:122-125); LLaMA-Factory passes
TrainingArguments through, whose optim defaults to adamw_torch_fused from transformers 4.54 when torch is
2.8 or later, adamw_torch otherwise (training_args.py:1286-1291 in 4.54.0; commented out in 4.53.0)."""

import pytest

from pycore.runconfig import read_run_config
from pycore.runconfig.reading import Reading

LLAMAFACTORY = "model_name_or_path: meta-llama/Llama-3.1-8B\nstage: sft\nfinetuning_type: lora\n"
AXOLOTL = "base_model: meta-llama/Llama-3.1-8B\nadapter: lora\nlora_r: 8\n"


def test_axolotl_unset_is_its_own_fused_default():
    out = read_run_config(AXOLOTL)
    assert out["request"]["workload"]["optimizer"] == "adamw_fused"
    assert any("optimizer unset: adamw_torch_fused" in n for n in out["notes"])


def test_llamafactory_unset_is_trainingarguments_default_at_the_default_versions():
    # the request's default versions (torch 2.11, transformers 5.17) are past both thresholds
    out = read_run_config(LLAMAFACTORY)
    assert out["request"]["workload"]["optimizer"] == "adamw_fused"


@pytest.mark.parametrize("torch, transformers, expected", [
    ("2.8.0", "4.54.0", "adamw_fused"),
    ("2.7.1", "5.17.0", "adamw"),        # torch before 2.8: adamw_torch
    ("2.11.0", "4.53.3", "adamw"),       # transformers before 4.54: adamw_torch whatever the torch
])
def test_trainingarguments_default_follows_both_versions(torch, transformers, expected):
    r = Reading("llamafactory", {})
    r.request["framework"] = {"torch": torch, "transformers": transformers}
    r.hf_optimizer("optim")
    assert r.request["workload"]["optimizer"] == expected
    assert r.notes and r.notes[0].startswith("optim unset: TrainingArguments' default")


def test_a_set_optimizer_is_read_as_written():
    r = Reading("llamafactory", {"optim": "adamw_torch"})
    r.hf_optimizer("optim")
    assert r.request["workload"]["optimizer"] == "adamw" and not r.notes


def test_the_cli_takes_the_default_at_the_versions_given_beside_the_file(tmp_path, capsys):
    import json
    from pycore.cli import main
    path = tmp_path / "llamafactory.yaml"
    path.write_text(LLAMAFACTORY)
    assert main(["estimate", "--from", str(path), "--torch-version", "2.7", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert any("adamw_torch (foreach AdamW)" in n for n in out["from"]["notes"])
    assert main(["estimate", "--from", str(path), "--json"]) == 0
    assert any("adamw_torch_fused" in n for n in json.loads(capsys.readouterr().out)["from"]["notes"])
