"""What the serving engines cache per token: one entry per kind of attention layer on one rank.

Engine-neutral: the layer kinds, their KV heads on a tensor-parallel rank and the widths of
what is stored. Each engine turns these into bytes its own way (block pages in vLLM, token cells
in SGLang, rows of a ggml type in llama.cpp).

- Grouped-query attention: a rank keeps max(1, n_kv_heads // tp) KV heads; with fewer KV heads
  than ranks each head is replicated (vLLM config/model.py get_num_kv_heads, v0.11.0 lines
  1179-1191; SGLang configs/model_config.py get_num_kv_heads, v0.5.3 lines 459-466).
- Multi-head latent attention caches one latent vector of kv_lora_rank + qk_rope_head_dim per
  token and layer, on every tensor-parallel rank (vLLM layers/mla.py v0.10.2 lines 85-90:
  num_kv_heads 1; SGLang model_runner.py v0.5.3 lines 1274-1279).
- Sliding-window layers keep at most the window (plus what the engine adds for in-flight tokens).
- Linear-attention layers (Qwen3-Next's Gated DeltaNet) cache no tokens: each request keeps a fixed
  conv and recurrent state instead (kind "linear", ``KVLayer.state_bytes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..errors import InputError
from ..model.spec import ModelSpec, attention_layers, is_mla, linear_conv_dim


@dataclass(frozen=True)
class KVLayer:
    """``count`` attention layers of one kind, as one rank caches them."""

    kind: str           # full | sliding | mla | linear
    count: int
    kv_heads: int       # heads stored per rank (MLA: 1 latent "head"; linear: 0)
    k_width: int        # key elements per head (MLA: kv_lora_rank + qk_rope_head_dim)
    v_width: int        # value elements per head (MLA: 0, the value is read back from the latent)
    window: int = 0     # sliding window in tokens
    chunked: bool = False     # the window is Llama 4's attention chunk
    conv_elements: int = 0    # linear attention: one request's conv state in one layer on this rank
    state_elements: int = 0   # linear attention: one request's recurrent state in one layer on this rank

    def elements_per_token(self) -> int:
        """K and V elements one token adds to one layer of this kind (none for linear attention)."""
        return self.kv_heads * (self.k_width + self.v_width)

    def state_bytes(self, conv_bytes: int, state_bytes: int) -> int:
        """One request's fixed state in one linear-attention layer."""
        return self.conv_elements * conv_bytes + self.state_elements * state_bytes


@lru_cache(maxsize=256)
def sliding_flags(m: ModelSpec) -> tuple[bool, ...]:
    """For each layer index, whether it uses the sliding window. Configs give only the count here;
    the full-attention layers are spread evenly, which reproduces gemma2's and gpt-oss's
    alternation (sliding first) and puts Gemma 3's global layers one in six."""
    return _off_even_spread(m.n_layers, m.n_layers - (m.sliding_layers if m.sliding_window else 0))


@lru_cache(maxsize=256)
def linear_flags(m: ModelSpec) -> tuple[bool, ...]:
    """For each layer index, whether it is linear attention: the softmax-attention layers spread evenly,
    last of each group, which gives Qwen3-Next's every full_attention_interval-th layer."""
    return _off_even_spread(m.n_layers, attention_layers(m))


def _off_even_spread(n_layers: int, spread: int) -> tuple[bool, ...]:
    """For each of n_layers layers, whether it is outside ``spread`` layers placed evenly (each the last
    of its group)."""
    return tuple(not ((i + 1) * spread // n_layers > i * spread // n_layers) for i in range(n_layers))


def recurrent_state_bytes(m: ModelSpec, tp: int = 1, conv_bytes: int = 2, state_bytes: int = 2,
                          conv_width: int | None = None) -> int:
    """One request's state in one Gated DeltaNet layer on a tensor-parallel rank: the causal conv's last
    kernel - 1 inputs of its conv_dim channels (transformers keeps the full kernel width: conv_width)
    and the recurrent state, value heads x key head dim x value head dim (vLLM mamba_utils.py
    gated_delta_net_state_shape; transformers Qwen3NextDynamicCache)."""
    return linear_layer(m, tp, 1, conv_width).state_bytes(conv_bytes, state_bytes)


def linear_layer(m: ModelSpec, tp: int, count: int, conv_width: int | None = None) -> KVLayer:
    """``count`` Gated DeltaNet layers as one rank holds them."""
    width = m.linear_conv_kernel - 1 if conv_width is None else conv_width
    return KVLayer("linear", count, 0, 0, 0, conv_elements=-(-linear_conv_dim(m) // tp) * width,
                   state_elements=-(-m.linear_v_heads // tp) * m.linear_k_head_dim * m.linear_v_head_dim)


def kv_heads_per_rank(m: ModelSpec, tp: int, where: str = "tensor_parallel_size") -> int:
    """KV heads on one tensor-parallel rank; the engines require one to divide the other."""
    if m.n_heads % tp:
        raise InputError(where, f"must divide the model's {m.n_heads} attention heads, got {tp}")
    if is_mla(m):
        return 1
    kv = m.n_kv_heads
    if kv >= tp and kv % tp or kv < tp and tp % kv:
        raise InputError(where, f"must divide the model's {kv} KV heads or be a multiple of them, got {tp}")
    return max(1, kv // tp)


def kv_layers(m: ModelSpec, tp: int = 1, first: int = 0, count: int | None = None,
              where: str = "tensor_parallel_size") -> tuple[KVLayer, ...]:
    """The cache layers among layers ``first`` .. ``first + count - 1`` (a pipeline stage; default
    all), on one tensor-parallel rank of degree ``tp``."""
    count = m.n_layers - first if count is None else count
    heads = kv_heads_per_rank(m, tp, where)
    if is_mla(m):
        return (KVLayer("mla", count, 1, m.kv_lora_rank + m.qk_rope_head_dim, 0),)
    flags = sliding_flags(m)[first:first + count]
    n_sliding = sum(flags)
    n_linear = sum(linear_flags(m)[first:first + count])
    if n_linear == count:
        raise InputError(where.replace("tensor_parallel_size", "pipeline_parallel_size").replace("tp_size", "pp_size"),
                         f"leaves a pipeline stage of layers {first}-{first + count - 1} without an attention layer")
    out = []
    if count - n_sliding - n_linear:
        out.append(KVLayer("full", count - n_sliding - n_linear, heads, m.head_dim, m.head_dim))
    if n_sliding:
        out.append(KVLayer("sliding", n_sliding, heads, m.head_dim, m.head_dim, m.sliding_window,
                           chunked=m.chunked_attention))
    if n_linear:
        out.append(linear_layer(m, tp, n_linear))
    return tuple(out)


def stage_split(n_layers: int, pp: int) -> tuple[int, ...]:
    """Layers per pipeline stage as vLLM splits them: n // pp each, the remainder going to the
    stages before the last (vllm/distributed/utils.py get_pp_indices, v0.10.2 lines 198-238)."""
    base, extra = divmod(n_layers, pp)
    sizes = [base] * pp
    # get_pp_indices: "if remaining_layers: for i in range(2, remaining_layers + 2): partitions[-i] += 1"
    for i in range(2, extra + 2):
        sizes[-i] += 1
    return tuple(sizes)
