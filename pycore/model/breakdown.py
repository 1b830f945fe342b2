"""Results as trees of named parts that add up to their parent."""

from __future__ import annotations

from dataclasses import dataclass

# Each top-level category links to its section of the documentation's Method page.
METHOD_ANCHORS = {
    "weights": "weights", "autocast weight copies": "autocast-weight-copies", "gradients": "gradients",
    "optimizer states": "optimizer-states", "activations": "activations", "logits and loss": "logits-and-loss",
    "KV cache": "kv-cache", "temporaries": "temporaries", "framework buffers": "framework-buffers",
    "allocator reserve": "allocator",
    "CUDA context": "cuda-context", "outside the allocator": "outside-allocator",
}


@dataclass(frozen=True)
class Node:
    name: str
    bytes: int
    children: tuple = ()
    key: str = ""

    def to_dict(self) -> dict:
        out = {"name": self.name, "bytes": self.bytes}
        if self.key:
            out["key"] = self.key
        if self.children:
            out["children"] = [c.to_dict() for c in self.children]
        return out


def node(name: str, children: tuple, key: str = "") -> Node:
    """A parent whose size is the sum of its children."""
    return Node(name, sum(c.bytes for c in children), children, key)


def snapshot_tree(snapshot, reserve_bytes: int, context_bytes: int, outside: tuple = ()) -> Node:
    """The device's memory at the peak: allocated parts, then the allocator's reserve and context."""
    cats = []
    for category, items in snapshot.parts:
        leaves = tuple(Node(k, v) for k, v in sorted(items.items(), key=lambda kv: -kv[1]) if v)
        if leaves:
            cats.append(node(category, leaves, METHOD_ANCHORS.get(category, "")))
    merged: dict = {}
    for c in cats:                      # a category may appear twice in a snapshot; merge it
        if c.name in merged:
            prev = merged[c.name]
            merged[c.name] = node(c.name, prev.children + c.children, prev.key)
        else:
            merged[c.name] = c
    allocated = node("allocated at peak", tuple(merged.values()), "peak")
    overhead = (Node("allocator reserve", reserve_bytes, (), "allocator"),
                Node("CUDA context", context_bytes, (), "cuda-context"))
    if outside:
        overhead += (node("outside the allocator", tuple(Node(k, v) for k, v in outside), "outside-allocator"),)
    return node("device total", (allocated,) + overhead, "device-total")
