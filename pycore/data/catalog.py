"""Model and GPU catalogs, read from the JSON data files on first use."""

from __future__ import annotations

import json
import os
from functools import lru_cache

from ..errors import InputError
from ..model.hfconfig import read_hf_config
from ..model.spec import ModelSpec

_DATA = os.path.dirname(__file__)


def data_bytes(name: str) -> bytes:
    """One of the core's data files, read through the package's loader: from the source tree, an
    installed package, or the zip the web page imports the core from (zipimport serves it too).
    A missing file raises OSError."""
    return __spec__.loader.get_data(os.path.join(_DATA, name))


@lru_cache(maxsize=None)
def _load(name: str) -> dict:
    return json.loads(data_bytes(name))


def model_entries() -> dict:
    return _load("models.json")["models"]


def gpu_entries() -> dict:
    return _load("gpus.json")["gpus"]


def term_entries() -> dict:
    """The breakdown's terms by key: colour and documentation anchor (data/terms.json)."""
    return _load("terms.json")["terms"]


def term_key(name: str) -> str:
    """The key of a breakdown term named ``name`` ("" if none): its name before any parenthesis, as
    the serving engines name their categories ("activations (chunked prefill of 8,192 tokens)")."""
    stem = name.split(" (", 1)[0]
    return next((k for k, t in term_entries().items() if stem in t["names"]), "")


@lru_cache(maxsize=256)
def catalog_model(model_id: str) -> ModelSpec:
    entries = model_entries()
    if model_id not in entries:
        raise InputError("model", f"unknown model id {model_id[:60]!r}; see `python -m pycore models` "
                                  f"for the {len(entries)} known ids")
    return read_hf_config(entries[model_id]["hf_config"], model_id)


def catalog_quantization(model_id: str):
    """The weight format a catalog model's checkpoint declares (its config's quantization_config)."""
    from ..model.formats import read_quantization
    return read_quantization(model_entries()[model_id]["hf_config"])


def catalog_gpu(gpu_id: str) -> dict:
    entries = gpu_entries()
    if gpu_id not in entries:
        raise InputError("gpu", f"unknown GPU id {gpu_id[:60]!r}; see `python -m pycore gpus` "
                                f"for the {len(entries)} known ids")
    return entries[gpu_id]
