"""Copy as command and --url (issue 12): a request becomes the page's link and the command line, and
both come back to the same request."""

import json
import re
import shlex
import zlib
import base64
from pathlib import Path

import pytest

from pycore.api import estimate_dict, links
from pycore.cli import _parser
from pycore.cli.args import build_request, model_part, serve_part
from pycore.request.parse import parse_request
from pycore.request.links import URL_PARAMS, compress_config, markdown, to_command, to_query

ROOT = Path(__file__).resolve().parents[2]

COMMANDS = [
    "estimate --model llama-3.1-8b --mode lora --batch 4 --seq 4096 --checkpointing --gpu rtx-4090-24gb",
    "estimate --model llama-2-7b --autocast bf16 --optimizer adamw_8bit --attention eager --gpu a100-80gb",
    "estimate --model qwen3-30b-a3b --mode inference --weights int4 --batch 16 --new-tokens 256 --kv-cache fp8",
    "estimate --model mistral-7b --mode qlora --lora-rank 64 --lora-alpha 16 --lora-targets all-linear --gpu-memory-gib 24",
    "estimate --model llama-3.1-70b --autocast bf16 --recipe fsdp2 --dp 8 --tp 8 --sp --recompute full --seq 4096",
    "estimate --model gpt2 --weights fp32 --torch-version 1.13 --transformers-version 4.35 --cuda-context-mib 1343",
    "estimate --model bert-base --head sequence-classification --num-labels 3 --weights fp32 --lora-alpha 0.5",
    "estimate --model llama-3.1-8b --mode inference --new-tokens 128 --cache-implementation static",
    "serve --model llama-3.1-8b --engine vllm --max-model-len 32768 --gpu-memory-utilization 0.85 --kv-cache-dtype fp8",
    "serve --model qwen3-30b-a3b --engine llamacpp --quant Q4_K_M --n-ctx 16384 --n-gpu-layers 30 --flash-attn on "
    "--gpu rtx-4090-24gb",
]


def request_of(command: str) -> dict:
    a = _parser().parse_args(shlex.split(command))
    if a.command == "serve":
        req, problem = model_part(a)
        req.update({"schema": 1, "workload": serve_part(a), "solve": a.solve,
                    "gpu": {"memory_gib": a.gpu_memory_gib} if a.gpu_memory_gib is not None else a.gpu})
    else:
        req, problem = build_request(a)
    assert problem is None
    return req


@pytest.mark.parametrize("command", COMMANDS)
def test_the_command_line_round_trips_through_the_request(command):
    req = request_of(command)
    assert estimate_dict(req)["status"] == "ok"
    again = to_command(req)
    assert again.startswith("python -m pycore ")
    back = request_of(again.split(" ", 3)[3])
    # the same request once parsed (a value left at its default may be left out of the command)
    assert parse_request(back) == parse_request(req), again
    if not command.startswith("serve"):
        assert back == req


def test_the_link_of_a_request_by_hand():
    req = request_of(COMMANDS[0])
    # defaults (the page's model is llama-3.1-8b, weights bf16, attention sdpa, ...) are left out
    assert to_query(req) == "mode=lora&batch=4&seq=4096&ckpt=1&gpu=rtx-4090-24gb"
    assert to_query(request_of(COMMANDS[1])) == "model=llama-2-7b&amp=bf16&opt=adamw_8bit&attn=eager&gpu=a100-80gb"
    assert to_query(request_of(COMMANDS[3])).endswith("&mem=24")
    assert "targets=all-linear" in to_query(request_of(COMMANDS[3]))
    serve = to_query(request_of(COMMANDS[8]))
    assert serve.startswith("mode=serve") and "max_model_len=32768" in serve and "gpu_memory_utilization=0.85" in serve


def test_a_pasted_config_travels_compressed_as_the_page_does():
    text = json.dumps({"model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24})
    value = compress_config(text)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", value)           # base64url, no padding
    raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    assert zlib.decompress(raw, -15).decode() == text        # raw deflate: DecompressionStream("deflate-raw")
    assert to_query({"hf_config": text}) == f"cfg={value}"
    assert to_command({"hf_config": text}).endswith("--hf-config config.json --gpu h100-sxm-80gb") or \
        "--hf-config config.json" in to_command({"hf_config": text})


def test_the_page_and_the_core_share_one_parameter_table():
    # The page reads the core's table from the schema; state.js holds no copy of it.
    from pycore.request.parse import request_schema
    assert request_schema()["url_params"] == URL_PARAMS
    js = (ROOT / "web" / "state.js").read_text()
    assert "export const PARAMS = {};" in js
    assert not re.search(r'\bbatch: "workload\.batch_size"', js)


def test_links_api_gives_command_query_and_markdown():
    resp = json.loads(links(json.dumps(request_of(COMMANDS[0]))))
    assert resp["status"] == "ok"
    out = resp["result"]
    assert out["command"] == "python -m pycore " + COMMANDS[0]
    assert out["query"] == "mode=lora&batch=4&seq=4096&ckpt=1&gpu=rtx-4090-24gb"
    res = estimate_dict(request_of(COMMANDS[0]))["result"]
    assert f"| {res['breakdown']['name']} | {res['breakdown']['bytes'] / 2 ** 30:.2f} | {res['breakdown']['bytes']:,} |" \
        in out["markdown"]
    assert markdown(res).count("\n| ") >= 4
    dims = {"model": {"dimensions": {"n_layers": 2, "hidden_size": 64, "n_heads": 4, "vocab_size": 100}}}
    resp = json.loads(links(json.dumps(dims)))
    assert resp["status"] == "error" and resp["errors"][0]["field"] == "model"
    assert json.loads(links("{bad"))["errors"][0]["field"] == "request"


def test_cli_url_flag(capsys):
    from pycore.cli import main
    assert main(shlex.split(COMMANDS[0] + " --url http://127.0.0.1:8000/")) == 0
    assert capsys.readouterr().out.strip() == "http://127.0.0.1:8000/?mode=lora&batch=4&seq=4096&ckpt=1&gpu=rtx-4090-24gb"
