"""A config setting looked up in a table (pycore/runconfig/reading.py Reading.looked_up): a known value
sets the request's field, an unknown one is consumed with a note naming it."""

from pycore.runconfig.reading import Reading


def _reading(data: dict) -> Reading:
    return Reading("test", data)


def test_a_known_optimizer_sets_the_workload():
    r = _reading({"optim": "adamw_torch_fused"})
    r.hf_optimizer("optim")
    assert r.request["workload"]["optimizer"] == "adamw_fused"
    assert not r.notes


def test_an_unknown_model_is_consumed_with_a_note_cut_to_80_characters():
    name = "org/" + "m" * 100
    r = _reading({"base_model": name})
    r.model("base_model")
    assert "model" not in r.request
    assert r.notes == [f"base_model: {name[:80]} is not in the model catalog; give --model ID or --hf-config "
                       "config.json (its config.json from the Hub)"]


def test_a_missing_setting_does_nothing():
    r = _reading({})
    r.looked_up("x", "model", lambda name: "never", "{source}: {name}")
    assert not r.notes and "model" not in r.request
