"""The pieces of the command line's main (pycore/cli/__init__.py), each on its own: the catalog listings,
each verb's part of the request, the record a check writes, and the link --url prints."""

import json
from argparse import Namespace
from pathlib import Path

from pycore import cli

ROOT = Path(__file__).resolve().parents[2]
GiB = 2 ** 30


def test_gpus_are_listed_one_a_line_smallest_memory_first(capsys):
    assert cli._list_catalog("gpus") == 0
    lines = capsys.readouterr().out.splitlines()
    gpus = json.loads((ROOT / "pycore" / "data" / "gpus.json").read_text())["gpus"]
    assert len(lines) == len(gpus)
    sizes = [float(line.split()[1]) for line in lines]
    assert sizes == sorted(sizes)
    # a100-40gb: 42,402,064,630 bytes / 2**30 = 39.49 GiB, printed to a tenth
    assert any(line.split()[:2] == ["a100-40gb", "39.5"] for line in lines)


def test_plan_asks_only_for_what_was_given():
    req = {}
    a = Namespace(command="plan", gpus=None, global_batch=64, max_gpus=None, limit=20)
    assert cli._add_query(a, req) is None
    assert req == {"plan": {"global_batch": 64, "limit": 20}}


def test_fit_asks_for_its_limit_and_check_for_the_text(tmp_path):
    req = {}
    assert cli._add_query(Namespace(command="fit", limit=3), req) is None and req == {"fit": {"limit": 3}}
    log = tmp_path / "run.txt"
    log.write_text("max_memory_allocated() = 10 GiB\n")
    req = {}
    assert cli._add_query(Namespace(command="check", measured=str(log)), req) is None
    assert req == {"measured": {"text": "max_memory_allocated() = 10 GiB\n"}}


def test_a_measured_file_that_cannot_be_read_is_the_problem_reported(tmp_path):
    req = {}
    problem = cli._add_query(Namespace(command="check", measured=str(tmp_path / "missing.txt")), req)
    assert problem.startswith("--measured: cannot read") and "measured" not in req


def test_a_check_record_is_appended_as_one_line_or_refused_with_its_note(tmp_path, capsys):
    out = tmp_path / "records.jsonl"
    assert cli._write_record(str(out), {"check": {"record": {"id": "a", "peak": 1}}})
    assert cli._write_record(str(out), {"check": {"record": {"id": "b", "peak": 2}}})
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b"]
    assert not cli._write_record(str(out), {"check": {"record": None, "record_note": "no peak was read"}})
    assert "error: --record: no peak was read" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 2


def test_a_serve_request_is_built_from_the_serve_flags():
    a = cli._parser().parse_args(["serve", "--model", "llama-3.1-8b", "--engine", "vllm", "--gpu-memory-gib", "40"])
    req, reading, problem = cli._request(a, None)
    assert problem is None and reading is None
    assert req["model"] == "llama-3.1-8b" and req["schema"] == 1 and req["gpu"] == {"memory_gib": 40.0}
    assert req["workload"]["mode"] == "serve" and req["workload"]["engine"] == "vllm"


def test_the_url_is_the_page_with_the_request_as_its_query(capsys):
    assert cli._print_url({"model": "llama-3.1-8b", "workload": {"mode": "lora", "batch_size": 4}}, "http://x/") == 0
    url = capsys.readouterr().out.strip()
    assert url.startswith("http://x/?") and "mode=lora" in url and "batch=4" in url
