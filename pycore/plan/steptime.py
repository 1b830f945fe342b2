"""The step-time model the layout search ranks by: a ranking aid, not a prediction of speed.

Time is counted in units of the step's ideal compute (6 x parameters x tokens a GPU, at the
reference GPU's bf16 rate), and the layout's costs are added to it:

- recomputation: full recomputes each layer's forward (1/3 more compute), selective 2.7%
  (Korthikanti et al. 2022, section 5: 2.7% for GPT-3 175B);
- pipeline bubble: 1F1B idles (p - 1)/(v m + p - 1) of the step (Narayanan et al. 2021, section
  2.2); a Hugging Face device_map runs the GPUs one after another, (p - 1)/p idle;
- tensor parallelism: 4 all-reduces of the layer's b s h activations a layer (2 forward, 2 backward;
  Shoeybi et al. 2019, section 3), each moving 2 (t - 1)/t of its bytes, per micro-batch;
- context parallelism: each ring step passes the K/V blocks on, (c - 1) blocks a layer forward and
  their gradients backward (Liu et al. 2023, ring attention);
- data parallelism: gradients reduced once a step, 2 (d - 1)/d of the GPU's gradient bytes (ring
  all-reduce), 3 (d - 1)/d with ZeRO-3 / FSDP (two all-gathers of the weights and a reduce-scatter;
  Rajbhandari et al. 2020, section 7) for every micro-batch. This traffic overlaps with the
  backward and forward compute (bucketed all-reduce, Li et al. 2020 "PyTorch Distributed", section
  3.2.3; FSDP's prefetch, Zhao et al. 2023, section 4.2): only what exceeds the compute counts;
- expert parallelism: two all-to-alls of the routed tokens a MoE layer, forward and backward;
- async TP (torchtitan's enable_async_tensor_parallel, recipe fsdp2): inductor's micro-pipeline TP
  pass (torch/_inductor/fx_passes/micro_pipeline_tp.py) turns each all-gather + matmul and matmul +
  reduce-scatter into a fused collective matmul on symmetric memory that sends one shard while it
  multiplies another, so TP traffic counts only where it exceeds the compute; symmetric memory
  spans one node's GPUs (peer-to-peer NVLink), so a TP group across nodes gets no overlap.
Traffic inside a node moves at NVLink's rate, traffic whose group spans nodes at the network's,
and every message also costs a fixed latency (an alpha-beta model: a ring of n ranks sends n - 1
messages a collective). ZeRO-3 / FSDP gather the weights again for every micro-batch. Nothing is
taken to overlap with compute but data-parallel traffic.
"""

from __future__ import annotations

from ..model.params import total_params
from ..units import dtype_bytes

RECOMPUTE_OVERHEAD = {"none": 0.0, "selective": 0.027, "full": 1 / 3}
# Reference rates (NVIDIA H100 SXM data sheet): 989 TFLOPS dense bf16, at a model FLOPs utilisation
# of 40% (Dubey et al. 2024, Table 4: 38-43% for Llama 3 405B); NVLink 4 at 450 GB/s a direction;
# InfiniBand NDR at 400 Gb/s = 50 GB/s a GPU. Only their ratios matter to the ranking.
REFERENCE_FLOPS = 989e12 * 0.40
NVLINK_BYTES_PER_S = 450e9
NETWORK_BYTES_PER_S = 50e9
# Per-message latency, an assumption of the order NCCL's small-message all-reduce shows (about 10 us
# across 8 GPUs in a node, tens of us across nodes; nccl-tests all_reduce_perf at 8 bytes).
NVLINK_LATENCY_S = 5e-6
NETWORK_LATENCY_S = 20e-6


def _seconds(nbytes: float, crosses: bool, messages: float = 0.0) -> float:
    if crosses:
        return nbytes / NETWORK_BYTES_PER_S + messages * NETWORK_LATENCY_S
    return nbytes / NVLINK_BYTES_PER_S + messages * NVLINK_LATENCY_S


def async_tp(par) -> bool:
    """Whether the layout runs torchtitan's async TP (an fsdp2 option; torchtitan requires compile)."""
    return par.tensor_parallel > 1 and bool(getattr(par.options, "async_tensor_parallel", False))


def step_time(req, par, micro: int, accumulation: int) -> dict:
    """The stated model's terms for one layout, and relative_step_time = their sum / ideal compute."""
    m, w = req.model, req.workload
    p, v, t, c, e = (par.pipeline_parallel, par.virtual_stages, par.tensor_parallel, par.context_parallel,
                     par.expert_parallel)
    d = par.data_parallel
    node = par.gpus_per_node
    cb = dtype_bytes(req.precision.compute())
    steps = max(1, par.micro_batches or accumulation)
    if par.recipe == "hf" and p > 1:
        bubble = (p - 1) / p                      # a device_map: one GPU busy at a time
    else:
        bubble = (p - 1) / (v * steps + p - 1) if p > 1 else 0.0
    params = total_params(m)
    compute = 6 * params * micro * w.seq_len * steps / (t * p * c) / REFERENCE_FLOPS
    layers = m.n_layers / p
    act = micro * w.seq_len / c * m.hidden_size * cb
    crosses_tp = t * c > node
    rounds = layers * steps
    tp = _seconds(4 * 2 * (t - 1) / t * act * rounds, crosses_tp, 4 * 2 * (t - 1) * rounds) if t > 1 else 0.0
    kv = micro * w.seq_len / c * 2 * m.n_kv_heads * m.head_dim * cb / t
    cp = _seconds(2 * (c - 1) * kv * rounds, crosses_tp, 2 * (c - 1) * rounds) if c > 1 else 0.0
    grad_bytes = params / (t * p) * cb
    sharded = par.zero_stage >= 3 or par.recipe == "fsdp2"
    group = d * c * e
    dp = 0.0
    if group > 1:
        # a ring all-reduce a step; ZeRO-3 / FSDP: two all-gathers and a reduce-scatter a micro-batch
        times = 3 * steps if sharded else 2
        dp = _seconds(times * (group - 1) / group * grad_bytes, par.gpus > node, times * (group - 1) * m.n_layers / p)
    ep = 0.0
    if e > 1 and m.n_experts:
        ep = _seconds(4 * (e - 1) / e * act * m.experts_per_token * rounds, t * c * e > node, 4 * (e - 1) * rounds)
    recompute = RECOMPUTE_OVERHEAD[par.recompute or "none"]
    busy = compute * (1 + recompute)
    exposed_dp = max(0.0, dp - busy)
    if async_tp(par) and not crosses_tp:
        tp = max(0.0, tp - busy)
    total = busy / (1 - bubble) + tp + cp + exposed_dp + ep
    return {"bubble_fraction": round(bubble, 4), "recompute_overhead": round(recompute, 4),
            "tp_crosses_node": crosses_tp, "tp_overlapped": async_tp(par) and not crosses_tp,
            "tp_comm_bytes_per_step": int(4 * 2 * (t - 1) / t * act * layers * steps) if t > 1 else 0,
            "communication_fraction": {"tensor": round(tp / compute, 4), "context": round(cp / compute, 4),
                                       "data": round(dp / compute, 4), "expert": round(ep / compute, 4)},
            "relative_step_time": round(total / compute, 4)}
