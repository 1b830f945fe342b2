"""The breakdown's term keys, colours and documentation anchors (pycore/data/terms.json), which the
page's charts read from catalog.json instead of holding a table of their own (issue 25)."""

import json
import re
from pathlib import Path

from pycore.api import catalog, estimate
from pycore.model.breakdown import METHOD_ANCHORS
from pycore.data.catalog import term_entries, term_key

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _heading_ids(page: str) -> set:
    return set(re.findall(r"\{#([a-z0-9-]+)\}", (DOCS / f"{page}.md").read_text(encoding="utf-8")))


def test_every_anchor_names_a_heading_of_the_docs():
    for key, t in term_entries().items():
        page, anchor = t["anchor"].split("/#")
        assert anchor in _heading_ids(page), (key, t["anchor"])


def test_every_term_of_a_step_has_an_entry_under_its_own_key():
    for name, key in METHOD_ANCHORS.items():
        if key in ("peak", "device-total"):
            continue
        assert key in term_entries(), name
        assert term_key(name) == key


def test_no_two_terms_share_a_colour():
    colours = [t["colour"] for t in term_entries().values()]
    assert len(set(colours)) == len(colours)
    assert all(re.fullmatch(r"#[0-9a-f]{6}", c) for c in colours)


def test_a_serving_category_is_keyed_by_its_name_before_the_parenthesis():
    assert term_key("activations (chunked prefill of 8192 tokens)") == "activations"
    assert term_key("NCCL communicators (outside the budget)") == "nccl-communicators"
    assert term_key("something new") == ""


def _top_terms(tree: dict) -> list:
    return [g for c in tree["children"] for g in (c["children"] if c["name"] == "allocated at peak" else [c])]


def test_every_engine_keys_every_term_it_reports():
    for engine in ("vllm", "sglang", "llamacpp", "hf"):
        req = {"model": "llama-3.1-8b", "workload": {"mode": "serve", "engine": engine}, "gpu": "a100-80gb"}
        out = json.loads(estimate(json.dumps(req)))
        assert out["status"] == "ok", (engine, out)
        for term in _top_terms(out["result"]["breakdown"]):
            assert term.get("key") in term_entries(), (engine, term["name"])


def test_a_sweep_point_carries_each_term_key_and_the_catalog_sends_the_table():
    req = {"model": "llama-3.1-8b", "workload": {"mode": "lora", "seq_len": 4096}, "gpu": "rtx-4090-24gb",
           "sweep": {"field": "seq_len", "stop": 8192}}
    sweep = json.loads(estimate(json.dumps(req)))["result"]["sweep"]
    terms = json.loads(catalog())["terms"]
    for p in sweep["points"]:
        assert [t["key"] for t in p["terms"]][:1] == ["weights"]
        assert all(t["key"] in terms for t in p["terms"])
    assert terms["weights"] == {"colour": "#4e79a7", "anchor": "method/#weights"}
