"""What one GPU holds of the model: parameters after tensor, pipeline and expert splits, and the
local model that its activations follow.

Tensor parallelism (Shoeybi et al. 2019, Megatron-LM section 3; megatron/core/tensor_parallel/layers.py):
- column-parallel linears split their output by t (q, k, v, the fused QKV, gate and up, MLA's
  q_b/kv_b): weight and bias / t;
- row-parallel linears split their input by t (o_proj, down_proj, GPT-2's c_proj, NeoX's
  dense_4h_to_h): weight / t, the bias is whole on every rank;
- norms, routers and MLA's down-projections (q_a, kv_a) are replicated;
- the word embedding and the output layer are vocabulary-parallel: V / t rows each.
Pipeline parallelism gives each stage its layers; the embedding sits on the first stage and the
final norm and output layer on the last (a tied output layer is a copy on the last stage when
p > 1, as Megatron keeps it). Experts are divided by the expert-parallel degree (expert tensor
parallelism 1). The dense layers of a MoE model are taken to be its first ``dense_layers`` layers
(DeepSeek's first_k_dense_replace, GLM-4.5's).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

from .params import head_params, layer_norm_params, linears
from .spec import ModelSpec, dense_layers_in, norm_params_per_unit, is_classifier, moe_layers
from .layout import Parallelism, stage_layers

_REPLICATED = frozenset({"q_a_proj", "kv_a_proj_with_mqa"})
_ROW = frozenset({"o_proj", "c_proj", "dense", "dense_4h_to_h", "down_proj"})
_DENSE_GROUPS = ("attention", "mlp")
_MOE_GROUPS = ("attention", "router", "experts", "shared")


@dataclass(frozen=True)
class LayerParams:
    """One transformer layer on one rank."""

    dense: int            # parameters sharded with the dense group (attention, MLP, norms, router)
    expert: int           # routed-expert parameters on this rank
    linear_weights: int   # weights of its linears, routers included (what QLoRA/int4 quantise, autocast casts)
    largest: int          # its largest single parameter tensor


@dataclass(frozen=True)
class RankParams:
    """Everything one rank of a layout holds, for one pipeline stage."""

    stage: int
    stages: int
    layers: int               # transformer layers on the stage
    dense_layers: int         # of which are dense (the rest are MoE)
    dense_layer: LayerParams
    moe_layer: LayerParams
    embedding: int            # word (+ position, type) embeddings on this rank, first stage only
    head: int                 # final norm and output layer on this rank, last stage only
    largest: int              # the largest single tensor on the rank
    vocab: int = 0            # rows of the vocabulary matrices on this rank (V / t, padded)

    @property
    def first(self) -> bool:
        return self.stage == 0

    @property
    def last(self) -> bool:
        return self.stage == self.stages - 1

    @property
    def moe_layers(self) -> int:
        return self.layers - self.dense_layers

    def layer_dense(self) -> int:
        return self.dense_layers * self.dense_layer.dense + self.moe_layers * self.moe_layer.dense

    def layer_expert(self) -> int:
        return self.dense_layers * self.dense_layer.expert + self.moe_layers * self.moe_layer.expert

    def dense(self) -> int:
        return self.layer_dense() + self.embedding + self.head

    def expert(self) -> int:
        return self.layer_expert()

    def total(self) -> int:
        return self.dense() + self.expert()

    def linear_weights(self) -> int:
        return self.dense_layers * self.dense_layer.linear_weights + self.moe_layers * self.moe_layer.linear_weights

    def largest_layer(self) -> int:
        """Parameters of the stage's largest layer: what ZeRO-3 / FSDP gather at once."""
        sizes = [lp.dense + lp.expert for lp, n in ((self.dense_layer, self.dense_layers),
                                                     (self.moe_layer, self.moe_layers)) if n]
        return max(sizes or [0])


def _rank_linear(lin, h: int, t: int, e: int) -> tuple[int, int, int]:
    """(dense, expert, weight) parameters of one layer's copy of ``lin`` on one rank; the weight is
    the largest tensor it contributes."""
    w = lin.in_features * lin.out_features
    b = lin.out_features if lin.bias else 0
    if lin.group == "experts":
        per_rank = lin.copies // e
        return 0, (w + b) * per_rank, w * per_rank
    if lin.group in ("router", "head") or lin.name in _REPLICATED:
        return (w + b) * lin.copies, 0, w * lin.copies
    if lin.name in _ROW and lin.out_features == h:
        return (w // t + b) * lin.copies, 0, w // t * lin.copies
    return (w + b) * lin.copies // t, 0, w * lin.copies // t


def _layer_norms(m: ModelSpec, t: int) -> int:
    return layer_norm_params(m, t) + (m.n_heads // t if m.attention_sinks else 0)   # sinks follow their heads


def _layer(m: ModelSpec, groups, t: int, e: int) -> LayerParams:
    dense, expert, weights, largest = _layer_norms(m, t), 0, 0, 0
    for lin in linears(m):
        if lin.group in groups:
            d, x, w = _rank_linear(lin, m.hidden_size, t, e)
            dense, expert = dense + d, expert + x
            largest = max(largest, w)
            weights += w
    return LayerParams(dense=dense, expert=expert, linear_weights=weights, largest=largest)


def padded_vocab(vocab: int, t: int, multiple: int = 1) -> int:
    """Megatron pads the vocabulary to a multiple of make_vocab_size_divisible_by x t
    (megatron/training/tokenizer vocab_size_with_padding); ``multiple`` 1 leaves it as it is."""
    step = multiple * t
    return -(-vocab // step) * step if multiple > 1 else vocab


@lru_cache(maxsize=1024)
def rank_params(m: ModelSpec, t: int = 1, p: int = 1, e: int = 1, stage: int = 0, split: tuple | None = None,
                vocab_multiple: int = 1) -> RankParams:
    """The parameters one rank of stage ``stage`` holds under tensor degree t, p stages and expert
    degree e; ``split`` gives the layers per stage (even by default)."""
    split = split or tuple(m.n_layers // p + (1 if i < m.n_layers % p else 0) for i in range(p))
    start = sum(split[:stage])
    layers = split[stage]
    dense_here = dense_layers_in(m, start, layers)
    h = m.hidden_size
    vocab = padded_vocab(m.vocab_size, t, vocab_multiple)
    v_rank = -(-vocab // t)
    first, last = stage == 0, stage == p - 1
    embedding = 0
    if first:
        embedding = v_rank * h + (m.max_positions * h if m.learned_positions else 0) + m.type_vocab_size * h
        embedding += (2 * h if m.family == "bert" else 0)                   # BERT's embedding LayerNorm
    head = 0
    if last and is_classifier(m):
        # a classification head: the final norm (decoders) and the score layer, no vocabulary matrix
        per_norm = norm_params_per_unit(m) * h
        head = (per_norm if m.family != "bert" else 0) + head_params(m)
    elif last:
        per_norm = norm_params_per_unit(m) * h
        head = per_norm                                                       # final norm (BERT: the MLM head's)
        if not m.tied_embeddings or p > 1:
            head += v_rank * h
        if m.family == "bert":
            head += h * h + h + v_rank                                        # MLM transform dense, decoder bias
    dense_layer = _layer(m, _DENSE_GROUPS, t, e)
    moe_layer = _layer(m, _MOE_GROUPS, t, e) if moe_layers(m) else LayerParams(0, 0, 0, 0)
    vocab_matrix = v_rank * h if (first or (head > 2 * h and not is_classifier(m))) else 0
    largest = max(dense_layer.largest if dense_here else 0, moe_layer.largest if layers > dense_here else 0,
                  vocab_matrix)
    return RankParams(stage=stage, stages=p, layers=layers, dense_layers=dense_here, dense_layer=dense_layer,
                      moe_layer=moe_layer, embedding=embedding, head=head, largest=largest, vocab=v_rank)


def rank_params_for(m: ModelSpec, par: Parallelism, stage: int, vocab_multiple: int = 1) -> RankParams:
    split = stage_layers(par, m.n_layers)
    return rank_params(m, par.tensor_parallel, par.pipeline_parallel, par.expert_parallel, stage, split, vocab_multiple)


@lru_cache(maxsize=256)
def local_model(m: ModelSpec, t: int) -> ModelSpec:
    """The model as one tensor-parallel rank computes it: its share of heads, MLP width and
    vocabulary (the activation model then follows the rank's own tensors)."""
    if t == 1:
        return m
    return replace(m, name=f"{m.name} (1/{t} tensor shard)", n_heads=m.n_heads // t, n_kv_heads=m.n_kv_heads // t,
                   ffn_size=m.ffn_size // t, shared_expert_ffn_size=m.shared_expert_ffn_size // t,
                   vocab_size=-(-m.vocab_size // t))
