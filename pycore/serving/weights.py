"""The weights one GPU of a vLLM or SGLang deployment loads: its tensor-parallel shard of each
linear in the checkpoint's format, its pipeline stage's layers, and its share of the experts.

Sharding follows vLLM's parallel layers (model_executor/layers/linear.py, vocab_parallel_embedding.py
at v0.10.2; SGLang copies them):
- QKVParallelLinear splits the query heads by tp; with fewer KV heads than ranks each rank keeps
  one KV head (num_kv_head_replicas = tp // n_kv_heads);
- column-parallel linears (gate/up, MLA's q_b and kv_b) split their outputs, row-parallel ones
  (o_proj, down_proj) their inputs, the row-parallel bias stays whole;
- norms, routers and MLA's down-projections (q_a, kv_a) are replicated;
- the embedding and lm_head are vocabulary-parallel: the vocabulary padded to a multiple of 64
  (DEFAULT_VOCAB_PADDING_SIZE) and then to the degree, V_pad / tp rows per rank;
- with expert parallelism a rank holds n_experts / (tp x dp) whole experts (FusedMoE
  determine_expert_map); without it every rank holds every expert split along its hidden width.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..errors import InputError
from ..model.params import layer_norm_params, linears, norm_params_per_unit, sink_params
from ..model.spec import ModelSpec, dense_layers_in, is_mla
from ..model.formats import WeightFormat, linear_bytes, quantises
from ..model.unconverted import kept_layers

VOCAB_PADDING = 64          # vllm/model_executor/layers/vocab_parallel_embedding.py DEFAULT_VOCAB_PADDING_SIZE
_REPLICATED = frozenset({"q_a_proj", "kv_a_proj_with_mqa"})
_ROW = frozenset({"o_proj", "down_proj", "experts.down_proj", "c_proj", "dense_4h_to_h"})


@dataclass(frozen=True)
class Shard:
    """One GPU's place in a serving deployment."""

    tp: int = 1
    pp: int = 1
    stage: int = 0
    first_layer: int = 0
    layers: int = 0          # layers on this stage
    expert_ranks: int = 1    # ranks the experts are divided over (tp x dp with expert parallelism)


def _local_shape(lin, m: ModelSpec, t: int, ep: int) -> tuple[int, int, int]:
    """(in, out, copies) of one layer's share of ``lin`` on a rank."""
    k, n, copies = lin.in_features, lin.out_features, lin.copies
    if lin.group == "router" or lin.name in _REPLICATED:
        return k, n, copies
    if lin.group == "experts":
        if ep > 1:
            return k, n, -(-copies // ep)
        return (k // t, n, copies) if lin.name in _ROW else (k, n // t, copies)
    if lin.name in ("k_proj", "v_proj"):
        return k, max(1, m.n_kv_heads // t) * m.head_dim, copies
    if lin.name in ("qkv_proj", "query_key_value", "c_attn") and not is_mla(m):
        return k, (m.n_heads // t + 2 * max(1, m.n_kv_heads // t)) * m.head_dim, copies
    if lin.name in _ROW and lin.out_features == m.hidden_size:
        return k // t, n, copies
    return k, n // t, copies


def padded_vocab(vocab: int, tp: int) -> int:
    """pad_vocab_size(V, 64), then divisible by the degree."""
    step = VOCAB_PADDING * tp
    return -(-vocab // step) * step


@lru_cache(maxsize=512)
def rank_weight_parts(m: ModelSpec, fmt: WeightFormat, dtype_bytes: int, shard: Shard, marlin: bool = True) -> tuple:
    """(name, bytes) of what one rank loads, largest groups first."""
    t, ep = shard.tp, shard.expert_ranks
    layers = shard.layers or m.n_layers
    first = shard.first_layer
    dense_here = dense_layers_in(m, first, layers)
    moe_here = layers - dense_here
    quant = {"attention": 0, "mlp": 0, "experts": 0}
    plain = 0
    for lin in linears(m):
        if lin.group == "head":
            continue
        if lin.group in ("experts", "router") or (lin.group == "shared"):
            n_layers = moe_here
        else:
            n_layers = layers if lin.group == "attention" else dense_here
        if not n_layers:
            continue
        k, n, copies = _local_shape(lin, m, t, ep)
        if quantises(fmt, lin.group):
            # modules the config keeps in 16 bits (modules_to_not_convert / ignored_layers)
            kept = kept_layers(fmt.unconverted, lin.group, lin.name, first, n_layers)
            nbytes = linear_bytes(fmt, k, n, lin.bias, dtype_bytes, marlin) * copies * (n_layers - kept)
            quant["experts" if lin.group == "experts" else "mlp" if lin.group in ("mlp", "shared") else "attention"] += nbytes
            plain += linear_bytes(WeightFormat(), k, n, lin.bias, dtype_bytes) * copies * kept
        else:
            plain += linear_bytes(WeightFormat(), k, n, lin.bias, dtype_bytes) * copies * n_layers
    sinks = sink_params(m) // m.n_layers // t
    plain += (layer_norm_params(m) + sinks) * layers * dtype_bytes
    v_rank = padded_vocab(m.vocab_size, t) // t
    h = m.hidden_size
    parts = []
    label = fmt.label()
    for name, key in (("attention", "attention"), ("MLP", "mlp"), ("experts", "experts")):
        if quant[key]:
            parts.append((f"{name} linears ({label})", quant[key]))
    parts.append(("16-bit linears, norms and routers", plain))
    if shard.stage == 0:
        parts.append(("embedding (V/tp rows)", v_rank * h * dtype_bytes))
        # learned positions (GPT-2's wpe, BERT's position_embeddings) and BERT's token types: plain
        # nn.Embedding in vLLM's gpt2.py and bert.py, whole on every rank
        extra = (m.max_positions if m.learned_positions else 0) + m.type_vocab_size
        parts.append(("position and token-type embeddings", extra * h * dtype_bytes))
    if shard.stage == shard.pp - 1:
        head = norm_params_per_unit(m) * h * dtype_bytes        # the final norm: weight, and a LayerNorm's bias
        if not m.tied_embeddings or shard.pp > 1:
            head += v_rank * h * dtype_bytes
        parts.append(("lm_head and final norm", head))
    return tuple((k, v) for k, v in parts if v)


def expert_ranks(m: ModelSpec, tp: int, dp: int, expert_parallel: bool, where: str) -> int:
    if not expert_parallel or not m.n_experts:
        return 1
    ranks = tp * dp
    if ranks > m.n_experts:
        raise InputError(where, f"expert parallelism over {ranks} ranks needs at least as many experts; the "
                                f"model has {m.n_experts}")
    return ranks


def vision_bytes(m: ModelSpec, tp: int, dtype_bytes: int) -> int:
    """A multimodal model's vision encoder and projector on one rank, in the model dtype: the encoder's
    linears split over tensor parallelism, embeddings, norms and projector replicated
    (vLLM 0.19 models/siglip.py; pycore/model/vision.py)."""
    return (m.vision.sharded // tp + m.vision.replicated) * dtype_bytes
