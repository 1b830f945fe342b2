"""A serving engine's answer: what each GPU holds, how many KV tokens that leaves, how many requests
of a given length they serve, and whether the engine starts at all (with its own refusal)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model.breakdown import Node, node
from ..data.catalog import term_key


@dataclass(frozen=True)
class ServingEstimate:
    engine: str
    version: str
    gpu_name: str
    gpu_memory_bytes: int
    gpus: int                       # GPUs the deployment uses
    device: Node                    # the most loaded GPU's memory, parts adding up to device_total_bytes
    kv_cache_bytes: int             # the KV pool on that GPU
    kv_cache_tokens: int            # tokens the pool holds (as the engine counts them)
    context_len: int                # the length asked for (max_model_len / context_length / n_ctx)
    max_concurrency: float          # requests of context_len tokens served at once
    max_context_len: int            # the longest context one request can have in the pool (capped by the model)
    starts: bool                    # the engine starts with these settings
    refusal: str = ""               # the engine's error when it does not
    report: dict = field(default_factory=dict)      # figures as the engine's log prints them
    host_bytes: int = 0             # host RAM (llama.cpp: mapped weights, CPU KV, CPU compute)
    host: Node | None = None
    devices: tuple = ()             # per-device trees when devices differ (llama.cpp layer split)
    settings: dict = field(default_factory=dict)    # the defaults the engine picked, by name
    warnings: tuple = ()

    @property
    def device_total_bytes(self) -> int:
        return self.device.bytes

    @property
    def verdict(self) -> str:
        """fits, at risk, does not fit or does not start, as the answer states it (pycore/accuracy/verdicts.py
        serving_verdict): the searches judge by it too."""
        from ..accuracy.verdicts import serving_verdict
        return serving_verdict(self)

    @property
    def fits(self) -> bool:
        """``verdict == "fits"``: for llama.cpp the device total's band fits the card, not only its estimate."""
        return self.verdict == "fits"


def tree(name: str, groups: list, key: str = "") -> Node:
    """A node from (category, {part: bytes}) pairs; empty parts are dropped. Each category carries its
    term key (catalog.term_key: the page's colour and docs anchor)."""
    children = []
    for category, parts in groups:
        if isinstance(parts, int):
            if parts:
                children.append(Node(category, parts, (), term_key(category)))
            continue
        leaves = tuple(Node(k, v) for k, v in parts.items() if v)
        if leaves:
            children.append(node(category, leaves, term_key(category)))
    return node(name, tuple(children), key)
