"""One field table (issue 19 item 2): each request field declares its URL parameter and CLI flag once, in the
schema; the link table, the command line's flags and their defaults, and the page's table are read from it."""

import ast
import dataclasses
import shlex
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

import pycore.request.parse as request_module
from pycore.cli import _parser
from pycore.cli.args import build_request
from pycore.request.links import to_command, to_query
from pycore.request.parse import cli_flags, outside_fields, parse_request, request_schema, url_params
from pycore.schema import at_path, integer, spec
from pycore.training.workload import Workload

ROOT = Path(__file__).resolve().parents[2]

# The tables as links.py and cli/args.py wrote them by hand before the fields declared them (commit 031e188):
# every link and command written before keeps working.
OLD_URL_PARAMS = {
    "mode": "workload.mode", "batch": "workload.batch_size", "seq": "workload.seq_len", "new": "workload.new_tokens",
    "w": "precision.weights", "amp": "precision.autocast", "act": "precision.activations", "kv": "precision.kv_cache",
    "opt": "workload.optimizer", "attn": "workload.attention", "ckpt": "workload.gradient_checkpointing",
    "rank": "workload.lora.rank", "targets": "workload.lora.targets", "head": "workload.head",
    "labels": "workload.num_labels", "cache": "workload.cache_implementation", "qf": "precision.quant_format",
    "qk": "precision.quant_kernel", "torch": "framework.torch", "tf": "framework.transformers",
    "recipe": "parallelism.recipe", "dp": "parallelism.data_parallel", "tp": "parallelism.tensor_parallel",
    "pp": "parallelism.pipeline_parallel", "vpp": "parallelism.virtual_stages", "cp": "parallelism.context_parallel",
    "ep": "parallelism.expert_parallel", "sp": "parallelism.sequence_parallel", "zero": "parallelism.zero_stage",
    "ooff": "parallelism.offload_optimizer", "poff": "parallelism.offload_params",
    "ga": "parallelism.gradient_accumulation", "rc": "parallelism.recompute", "gb": "plan.global_batch",
    "mem": "gpu.memory_gib", "loss": "workload.loss_kernel", "liger": "workload.liger_kernels",
    "compile": "workload.torch_compile", "aoff": "workload.activation_offload", "pack": "workload.packing",
    "nf4": "workload.peft_nf4_base", "peft": "workload.peft_config",
}
OLD_FLAGS = {
    "workload.mode": "--mode", "workload.batch_size": "--batch", "workload.seq_len": "--seq",
    "workload.new_tokens": "--new-tokens", "precision.weights": "--weights", "precision.autocast": "--autocast",
    "precision.activations": "--activations", "precision.kv_cache": "--kv-cache", "workload.optimizer": "--optimizer",
    "workload.attention": "--attention", "workload.gradient_checkpointing": "--checkpointing",
    "workload.lora.rank": "--lora-rank", "workload.lora.alpha": "--lora-alpha", "workload.lora.targets": "--lora-targets",
    "workload.head": "--head", "workload.num_labels": "--num-labels",
    "workload.cache_implementation": "--cache-implementation", "precision.quant_format": "--quant-format",
    "precision.quant_kernel": "--quant-kernel", "framework.torch": "--torch-version",
    "framework.transformers": "--transformers-version", "framework.peft": "--peft-version",
    "parallelism.sequence_parallel": "--sp", "workload.loss_kernel": "--loss-kernel",
    "workload.liger_kernels": "--liger-kernels", "workload.torch_compile": "--compile",
    "workload.activation_offload": "--activation-offload", "workload.packing": "--packing",
    "workload.peft_nf4_base": "--peft-nf4-base", "parallelism.recipe": "--recipe", "parallelism.data_parallel": "--dp",
    "parallelism.tensor_parallel": "--tp", "parallelism.pipeline_parallel": "--pp", "parallelism.virtual_stages": "--vpp",
    "parallelism.context_parallel": "--cp", "parallelism.expert_parallel": "--ep", "parallelism.zero_stage": "--zero",
    "parallelism.offload_optimizer": "--offload-optimizer", "parallelism.offload_params": "--offload-params",
    "parallelism.micro_batches": "--micro-batches", "parallelism.gradient_accumulation": "--grad-accum",
    "parallelism.recompute": "--recompute", "parallelism.recompute_layers": "--recompute-layers",
    "parallelism.gpus_per_node": "--gpus-per-node",
}


def test_a_new_field_gets_its_url_parameter_flag_and_default_from_one_declaration(monkeypatch):
    # one line: a field on a copy of the Workload dataclass, nothing else edited
    @dataclasses.dataclass(frozen=True)
    class Extended(Workload):
        warmup_steps: int = spec(3, integer(0, 100, url="warm", cli="--warmup-steps", doc="steps before the peak"))

    monkeypatch.setattr(request_module, "Workload", Extended)
    assert url_params()["warm"] == "workload.warmup_steps"
    assert request_schema()["url_params"]["warm"] == "workload.warmup_steps"        # the page's table
    assert cli_flags()["workload.warmup_steps"] == "--warmup-steps"
    parser = _parser()
    estimate = next(a for a in parser._actions if a.dest == "command").choices["estimate"]   # noqa: SLF001
    assert "steps before the peak (default 3)" in " ".join(estimate.format_help().split())
    req, problem = build_request(parser.parse_args(shlex.split("estimate --model gpt2 --warmup-steps 7")))
    assert problem is None and req["workload"] == {"warmup_steps": 7}
    assert parse_request(req).workload.warmup_steps == 7
    assert to_query(req) == "model=gpt2&warm=7"
    assert to_command(req) == "python -m pycore estimate --model gpt2 --warmup-steps 7 --gpu h100-sxm-80gb"
    req["workload"]["warmup_steps"] = 3                  # the schema's default: left out of both
    assert to_query(req) == "model=gpt2" and "--warmup-steps" not in to_command(req)
    # absent from the command line: absent from the request, which takes the default
    req, _ = build_request(parser.parse_args(shlex.split("estimate --model gpt2")))
    assert "workload" not in req and parse_request(req).workload.warmup_steps == 3


def test_every_parameter_and_flag_names_exactly_one_field():
    rows = outside_fields()
    paths = [path for path, _, _ in rows]
    assert len(paths) == len(set(paths))
    urls = [f.url for _, f, _ in rows if f.url]
    flags = [f.cli for _, f, _ in rows if f.cli]
    assert len(urls) == len(set(urls)) and len(flags) == len(set(flags))
    fields = request_schema()["fields"]
    assert set(url_params().values()) <= set(fields)
    assert set(cli_flags()) <= set(fields)
    assert len(set(url_params().values())) == len(url_params())          # no two parameters for one path


def test_the_links_and_flags_written_before_keep_working():
    assert {k: v for k, v in url_params().items() if k in OLD_URL_PARAMS} == OLD_URL_PARAMS
    assert {k: v for k, v in cli_flags().items() if k in OLD_FLAGS} == OLD_FLAGS


def _other_value(f: dict):
    """A valid value of the field other than its default, from the schema's own description."""
    if f["type"] == "bool":
        return not f.get("default", False)
    if f["type"] == "choice":
        return next(c for c in f["choices"] if c != f.get("default"))
    if f["type"] in ("int", "number"):
        return int(f["minimum"]) + 1 if f.get("default") != int(f["minimum"]) + 1 else int(f["minimum"]) + 2
    if f["type"] == "names":
        return ["q_proj", "v_proj"]
    if f["type"] == "ints":
        return [2, 3]
    if f["type"] == "text":
        return "2.4"
    return None


def _request_with(path: str, value) -> dict:
    req = {"schema": 1, "model": "gpt2", "gpu": request_module.DEFAULT_GPU}
    node = req
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return req


SIMPLE = [(p, path) for p, path in url_params().items()
          if path.split(".")[0] in ("workload", "precision", "framework", "parallelism")
          and request_schema()["fields"][path]["type"] not in ("object",)]


@pytest.mark.parametrize("param,path", SIMPLE)
def test_each_url_parameter_round_trips_url_request_url(param, path):
    f = request_schema()["fields"][path]
    value = _other_value(f)
    query = to_query(_request_with(path, value))
    (got_param, text), = [kv for kv in parse_qsl(query) if kv[0] != "model"]
    assert got_param == param
    # the link's text read back by the field's type gives the request's value, whose link is the same
    back = {"bool": lambda t: t == "1", "int": int, "number": float, "names": lambda t: t.split(","),
            "ints": lambda t: [int(x) for x in t.split(",")]}.get(f["type"], lambda t: int(t) if t.isdigit() and
                                                                 isinstance(value, int) else t)(text)
    assert back == value
    assert to_query(_request_with(path, back)) == query


CLI = [(path, flag) for path, flag in cli_flags().items() if path != "gpu.memory_gib"
       and request_schema()["fields"][path]["type"] != "object"]


@pytest.mark.parametrize("path,flag", CLI)
def test_each_flag_round_trips_command_request_command(path, flag):
    f = request_schema()["fields"][path]
    value = _other_value(f)
    req = _request_with(path, value)
    command = to_command(req)
    words = shlex.split(command)
    assert flag in words or "--no-" + flag[2:] in words, command
    a = _parser().parse_args(words[3:])
    again, problem = build_request(a)
    assert problem is None
    assert at_path(again, path) == value
    assert to_command(again) == command


def test_mixed_precision_implies_fp32_weights_in_the_core():
    # torch.autocast keeps the parameters in fp32 and casts them per op: the master weights are fp32
    req = parse_request({"model": "gpt2", "precision": {"autocast": "bf16"}})
    assert (req.precision.weights, req.precision.autocast) == ("fp32", "bf16")
    assert parse_request({"model": "gpt2"}).precision.weights == "bf16"
    from pycore.api import estimate_dict
    resp = estimate_dict({"model": "gpt2", "precision": {"autocast": "bf16", "weights": "bf16"}})
    assert resp["errors"][0]["field"] == "precision.autocast"
    # links and commands leave out the weights the autocast implies, and keep any other
    assert to_query({"model": "gpt2", "precision": {"autocast": "bf16", "weights": "fp32"}}) == "model=gpt2&amp=bf16"
    assert "--weights" not in to_command({"model": "gpt2", "precision": {"autocast": "bf16", "weights": "fp32"}})
    assert request_schema()["implied"]["precision.weights"] == {"when": "precision.autocast", "value": "fp32"}


def test_defaults_are_written_once():
    # the CLI's --gpu and the page's model come from request.py (the page reads catalog.json request.defaults)
    a = _parser().parse_args(["estimate", "--model", "gpt2"])
    assert a.gpu == request_module.DEFAULT_GPU
    assert request_schema()["defaults"] == {"gpu": request_module.DEFAULT_GPU, "model": request_module.DEFAULT_MODEL}
    state = (ROOT / "web" / "state.js").read_text()
    assert "llama-3.1-8b" not in state and "h100" not in state
    assert '"fp32"' not in state                                    # the autocast rule lives in the core


def _imports(module: str) -> set:
    tree = ast.parse((ROOT / "pycore" / f"{module}.py").read_text())
    return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}


def test_links_and_request_do_not_import_each_other():
    assert "links" not in _imports("request/parse")
    assert "parse" in _imports("request/links")


def test_the_page_keeps_no_field_check_and_no_hand_made_layout_map():
    state = (ROOT / "web" / "state.js").read_text()
    assert "f.minimum" not in state and "f.maximum" not in state and "choices.includes" not in state
    plan = (ROOT / "web" / "plan.js").read_text()
    assert "dp: p.data_parallel" not in plan and "paramOfPath" in plan
