"""Activation offloading: what stays on the GPU and what the host must hold (pinned memory).

- torchtune's OffloadActivations (torchtune 0.6.1, torchtune/training/_activation_offloading.py lines
  28-110): a saved-tensors hook moves every saved tensor of at least min_offload_size = 1024 bytes to
  pinned host memory in forward and brings it back in backward, keeping at most max_fwd_stash_size = 5
  tensors in flight in forward and prefetching the next layer's in backward; the output layer is left
  on the GPU (lines 396-411). Under activation checkpointing, what is saved, and offloaded, is each
  block's input.
- Unsloth's offloaded gradient checkpointing (unsloth_zoo gradient_checkpointing.py,
  Unsloth_Offloaded_Gradient_Checkpointer: ``hidden_states.to("cpu", non_blocking=True)``) and DeepSpeed's
  ``activation_checkpointing.cpu_checkpointing`` (deepspeed/runtime/activation_checkpointing/
  checkpointing.py, the checkpointed inputs copied to the CPU): only the checkpointed layer inputs move.
The GPU keeps the layer being computed and, in backward, the one being brought back.
"""

from __future__ import annotations

from dataclasses import replace

from .activations import LayerCost

IN_FLIGHT_LAYERS = 2        # the layer computing and the one in transit (prefetch / stash)


def offload_layers(layers: list[LayerCost], mode: str, checkpointing: bool) -> list[LayerCost]:
    """The layers' costs with their saved tensors (or checkpointed inputs) moved to the host."""
    if mode == "none":
        return layers
    out = []
    for lc in layers:
        if checkpointing:
            # the block inputs live on the host; the one being recomputed is brought back
            out.append(replace(lc, checkpoint_input=0,
                               forward_extra=lc.forward_extra + lc.checkpoint_input,
                               backward_extra=lc.backward_extra + IN_FLIGHT_LAYERS * lc.checkpoint_input))
        else:
            # torchtune without checkpointing: every saved tensor goes; the layer at work keeps its own
            kept = lc.saved_total()
            out.append(replace(lc, saved={}, forward_extra=lc.forward_extra + kept,
                               backward_extra=lc.backward_extra + IN_FLIGHT_LAYERS * kept))
    return out


def host_bytes(layers: list[LayerCost], checkpointing: bool) -> int:
    """Pinned host memory the offloaded activations take (all layers' saved tensors or block inputs)."""
    if checkpointing:
        return sum(lc.count * lc.checkpoint_input for lc in layers)
    return sum(lc.count * lc.saved_total() for lc in layers)
