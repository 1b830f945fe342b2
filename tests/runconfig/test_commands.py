"""Launch commands both ways (issue 20): the engine's own command line read into a request, the command
an answer prints read back to the same answer, and bad commands refused naming what is wrong."""

import pytest

from pycore.api import estimate_dict
from pycore.cli import main
from pycore.errors import InputError
from pycore.serving.commands import read_command

COMMANDS = [
    "vllm serve Qwen/Qwen2.5-7B-Instruct --tensor-parallel-size 2 --max-model-len 32768 --gpu-memory-utilization 0.92",
    "python3 -m vllm.entrypoints.openai.api_server --model meta-llama/Llama-3.1-8B-Instruct --max-num-seqs 64 "
    "--kv-cache-dtype fp8 --enforce-eager --host 0.0.0.0 --port 8000",
    "python -m sglang.launch_server --model-path meta-llama/Llama-3.1-8B-Instruct --tp 2 --mem-fraction-static 0.85 "
    "--context-length 16384 --host 0.0.0.0",
    "CUDA_VISIBLE_DEVICES=0 llama-server -m /models/Qwen2.5-7B-Instruct-Q4_K_M.gguf -c 16384 -ngl 99 -fa on -np 2",
]


def _answer(cmd: str, gpu="h100-sxm-80gb") -> dict:
    r = read_command(cmd)
    resp = estimate_dict({"model": r["model"], "gpu": gpu, "workload": r["workload"]})
    assert resp["status"] == "ok", resp
    return resp["result"]


def test_the_engine_flags_are_read_into_the_engine_fields():
    r = read_command(COMMANDS[0])
    assert r["model"] == "qwen2.5-7b"
    assert r["workload"] == {"mode": "serve", "engine": "vllm", "tensor_parallel_size": 2, "max_model_len": 32768,
                             "gpu_memory_utilization": 0.92}
    r = read_command(COMMANDS[3])
    assert r["model"] == "qwen2.5-7b" and r["workload"]["engine"] == "llamacpp"
    assert (r["workload"]["n_ctx"], r["workload"]["n_gpu_layers"], r["workload"]["quant"]) == (16384, 99, "Q4_K_M")
    assert r["workload"]["flash_attn"] == "on" and r["workload"]["n_parallel"] == 2


def test_flags_without_effect_on_memory_are_named_in_the_notes():
    notes = read_command(COMMANDS[1])["notes"]
    assert any("--host" in n for n in notes) and any("--port" in n for n in notes)


@pytest.mark.parametrize("cmd", COMMANDS)
def test_the_printed_launch_command_read_back_gives_the_same_answer(cmd):
    first = _answer(cmd)
    again = _answer(first["launch_command"])
    assert again["kv_cache_tokens"] == first["kv_cache_tokens"]
    assert again["device_total_bytes"] == first["device_total_bytes"]
    assert again["launch_command"] == first["launch_command"]


def test_the_launch_command_carries_the_settings_the_answer_assumed():
    res = _answer(COMMANDS[0])
    cmd = res["launch_command"]
    assert cmd.startswith("vllm serve qwen2.5-7b ")
    assert "--max-model-len 32768" in cmd and "--gpu-memory-utilization 0.92" in cmd
    assert f"--max-num-seqs {res['settings']['max_num_seqs']}" in cmd
    assert "assumed" in res["version_note"] and "0." in res["version_note"]


@pytest.mark.parametrize("cmd, says", [
    ("vllm serve Qwen/Qwen2.5-7B-Instruct --max-model-length 4096", "--max-model-length"),
    ("llama-server -m x.gguf -c 4096 --bogus", "--bogus"),
    ("vllm serve someorg/NotInTheCatalog-13B", "--hf-config"),
    ("vllm serve Qwen/Qwen2.5-7B-Instruct --max-model-len", "needs a value"),
    ("vllm serve Qwen/Qwen2.5-7B-Instruct --max-model-len lots", "whole number"),
    ("vllm serve 'unterminated", "split"),
    ("rm -rf /", "not a command"),
    ("", "give the engine"),
    ("vllm serve " + "x" * 9000, "longer than"),
    ("vllm serve a " + "-q x " * 450, "words"),
])
def test_bad_commands_are_refused_naming_the_problem(cmd, says):
    with pytest.raises(InputError) as exc:
        read_command(cmd)
    assert says in exc.value.message


def test_the_cli_reads_a_command_and_prints_the_launch_command(capsys):
    assert main(["serve", "--from-command", COMMANDS[0], "--print-command"]) == 0
    out = capsys.readouterr().out
    assert "launch: vllm serve qwen2.5-7b --tensor-parallel-size 2" in out
    assert "version: vLLM" in out


def test_the_cli_names_an_unknown_flag(capsys):
    assert main(["serve", "--from-command", "vllm serve Qwen/Qwen2.5-7B-Instruct --frobnicate 2"]) == 2
    assert "--frobnicate" in capsys.readouterr().err


def test_sglang_settings_round_trip_including_small_values():
    cmd = ("python -m sglang.launch_server --model-path Qwen/Qwen2.5-7B-Instruct --page-size 16 --cuda-graph-max-bs 1 "
           "--kv-cache-dtype fp8_e4m3 --max-total-tokens 100000")
    first = _answer(cmd)
    assert "--cuda-graph-max-bs 1" in first["launch_command"] and "--page-size 16" in first["launch_command"]
    again = _answer(first["launch_command"])
    assert again["kv_cache_tokens"] == first["kv_cache_tokens"] == 100000
