"""Config files people already have (axolotl, LLaMA-Factory, torchtune, DeepSpeed, accelerate) read into a
request, with the fields used and every field ignored (``python -m pycore estimate --from FILE``)."""

from __future__ import annotations

from ..errors import InputError
from ..request.jsontext import parse_json
from .yamltext import parse_yaml
from .launchers import read_accelerate, read_deepspeed
from .reading import Reading
from .trainers import read_axolotl, read_llamafactory, read_torchtune

KINDS = ("axolotl", "llamafactory", "torchtune", "deepspeed", "accelerate")
_READERS = {"axolotl": read_axolotl, "llamafactory": read_llamafactory, "torchtune": read_torchtune,
            "deepspeed": read_deepspeed, "accelerate": read_accelerate}
# Fields that only one tool writes, to tell the files apart.
_SIGNS = (("accelerate", ("distributed_type", "compute_environment", "num_processes")),
          ("deepspeed", ("zero_optimization", "train_micro_batch_size_per_gpu", "train_batch_size")),
          ("llamafactory", ("model_name_or_path", "finetuning_type", "cutoff_len", "stage")),
          ("axolotl", ("base_model", "micro_batch_size", "sequence_len", "adapter")))


def parse_config_text(text: str, field: str = "from"):
    """JSON (a DeepSpeed config) or the YAML subset of pycore.runconfig.yamltext."""
    if isinstance(text, str) and text.lstrip().startswith("{"):
        return parse_json(text, field)
    return parse_yaml(text, field)


def detect_kind(data) -> str:
    if not isinstance(data, dict):
        raise InputError("from", "a training config is a mapping of settings, not a list or a single value")
    if isinstance(data.get("model"), dict) and "_component_" in data["model"]:
        return "torchtune"
    for kind, keys in _SIGNS:
        if any(k in data for k in keys):
            return kind
    raise InputError("from", "not a config this reader knows: expected an axolotl, LLaMA-Factory or torchtune "
                             "YAML, a DeepSpeed JSON or an accelerate config")


def read_run_config(text: str, kind: str | None = None, deepspeed_text: str | None = None,
                    framework: dict | None = None) -> dict:
    """The request a config file makes: {"kind", "request", "used": [{"field", "sets", "value"}],
    "read_only": [fields read that set nothing: "auto", a default, a note], "ignored": [field, ...], "notes": [...], "deepspeed_file": path it names or None}. A DeepSpeed JSON
    that the file names by path can be given as ``deepspeed_text``; its layout then applies. ``framework``:
    the versions given beside the file ({"torch": "2.7"}), for the defaults that depend on them."""
    data = parse_config_text(text)
    kind = kind or detect_kind(data)
    if kind not in _READERS:
        raise InputError("from", f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    reading = Reading(kind, data, framework)
    _READERS[kind](reading)
    out = reading.result()
    if deepspeed_text is not None:
        ds = read_run_config(deepspeed_text, "deepspeed")
        _merge_deepspeed(out, ds, reading.deepspeed_file or "deepspeed")
    return out


def _merge_deepspeed(out: dict, ds: dict, name: str) -> None:
    """The DeepSpeed file sets the layout; the training config's own batch, accumulation and precision
    stay (DeepSpeed's are "auto" when the HF Trainer fills them in)."""
    req = out["request"]
    for part, values in ds["request"].items():
        target = req.setdefault(part, {})
        for key, value in values.items():
            if part == "parallelism" or key not in target:
                target[key] = value
    out["used"] += [{**u, "field": f"{name}:{u['field']}"} for u in ds["used"]]
    out["ignored"] += [f"{name}:{f}" for f in ds["ignored"]]
    out["read_only"] += [f"{name}:{f}" for f in ds["read_only"]]
    out["notes"] += ds["notes"]
