"""The fit search's levers are one table (pycore/plan/levers.py LEVERS): every lever states a cost and its
source, the ladders take every rung's cost from the table and nowhere else, and changing the table
changes the plans."""

import itertools
import re
from dataclasses import replace
from pathlib import Path

import pytest

from pycore.api import estimate_dict
from pycore.plan import levers
from pycore.plan.fit import ladders
from pycore.request.parse import parse_request

# Requests that reach every lever: each mode, optimizer, attention, batch and sequence length.
GRID = [{"model": "llama-3.1-8b", "workload": {"mode": mode, "optimizer": opt, "gradient_checkpointing": ckpt,
                                               "attention": "eager", "batch_size": 12, "seq_len": 1024}}
        for mode, opt, ckpt in itertools.product(["full", "lora", "qlora"], ["adamw", "adamw_fused"], [False, True])]
GRID += [{"model": "llama-3.1-8b", "workload": {"mode": "full"}, "precision": {"weights": "fp32", "autocast": "bf16"}},
         {"model": "llama-3.1-8b", "workload": {"mode": "peft", "peft_config": {"peft_type": "LORA", "r": 16,
                                                                                "target_modules": "all-linear"}}},
         {"model": "llama-3.1-8b", "workload": {"mode": "inference", "batch_size": 8, "seq_len": 1024,
                                                "new_tokens": 16, "attention": "eager"}}]
FIT_CASE = {"model": "llama-3.1-8b", "workload": {"mode": "full", "batch_size": 8, "seq_len": 4096},
            "precision": {"weights": "fp32", "autocast": "bf16"}, "gpu": "a100-80gb", "fit": {"limit": 5}}


def _rungs():
    for raw in GRID:
        for name, rungs in ladders(parse_request(raw)):
            yield name, rungs


def _plans():
    resp = estimate_dict(FIT_CASE)
    assert resp["status"] == "ok", resp
    return resp["result"]["fit"]["plans"]


def test_every_lever_states_a_cost_and_where_it_comes_from():
    assert len(levers.LEVERS) >= 20
    for key, lever in levers.LEVERS.items():
        assert lever.lever and lever.changes and lever.cost_text, key
        assert lever.costs and all(isinstance(c, float) and c >= 0 for c in lever.costs), key
        assert list(lever.costs) == sorted(lever.costs), key         # a further rung never costs less
        # a source is a citation (a paper's year, a library's name) or says it is a ranking weight
        assert lever.source.startswith("a ranking weight, not measured") or re.search(r"20\d\d|torch", lever.source), key


def test_recomputation_costs_one_forward_of_three_passes():
    # Korthikanti et al. 2022: forward + backward (two forwards' work) = 3 passes; one more forward = 1/3.
    assert levers.LEVERS["checkpointing"].costs[0] == pytest.approx(1 / 3, abs=0.01)


def test_every_rung_of_the_ladders_takes_its_cost_from_the_table():
    seen = 0
    for name, rungs in _rungs():
        for rung in rungs:
            owners = [lv for lv in levers.LEVERS.values() if lv.lever == name and rung.cost in lv.costs
                      and re.fullmatch(re.sub(r"\\\{\w+\\\}", ".+", re.escape(lv.cost_text)), rung.cost_text)]
            assert owners, (name, rung)
            seen += 1
    assert seen > 40


def test_the_ladders_use_every_lever_of_the_table(monkeypatch):
    used = set()

    class Recording(dict):
        def __getitem__(self, key):
            used.add(key)
            return dict.__getitem__(self, key)

    monkeypatch.setattr(levers, "LEVERS", Recording(levers.LEVERS))
    monkeypatch.setattr("pycore.plan.fit.LEVERS", levers.LEVERS)
    list(_rungs())
    assert used == set(levers.LEVERS)        # no lever of the table is dead, none of the ladders' is outside it


def test_a_plans_cost_is_the_sum_of_its_levers_costs_in_the_table():
    # The cheapest plan: micro-batch 2 of 8 (the second rung: 2 x 0.04), Liger's loss (0.02) and
    # ZeRO-Offload (0.6): 0.08 + 0.02 + 0.6 = 0.70.
    first = _plans()[0]
    assert [c["lever"] for c in first["changes"]] == ["batch", "loss", "ZeRO-Offload"]
    assert first["cost"] == pytest.approx(0.70)


def test_raising_a_levers_cost_in_the_table_changes_the_plans(monkeypatch):
    before = _plans()
    assert any(c["lever"] == "checkpointing" for p in before for c in p["changes"])
    dear = replace(levers.LEVERS["checkpointing"], costs=(9.0,), cost_text="very dear")
    monkeypatch.setitem(levers.LEVERS, "checkpointing", dear)
    rung = dict(ladders(parse_request(FIT_CASE)))["checkpointing"][0]
    assert (rung.cost, rung.cost_text) == (9.0, "very dear")
    after = _plans()
    # five plans cheaper than 9.0 exist without checkpointing, so none of the five uses it now
    assert not any(c["lever"] == "checkpointing" for p in after for c in p["changes"])
    assert all(p["cost"] < 9.0 for p in after)


def test_the_training_methods_page_shows_the_table_as_it_is():
    page = (Path(__file__).resolve().parents[2] / "docs" / "methods.md").read_text(encoding="utf-8")
    assert levers.levers_markdown() in page, "docs/methods.md is stale: run python3 scripts/levers_table.py"
    assert page.count("| checkpointing | gradient checkpointing on every layer | 0.33 |") == 1
