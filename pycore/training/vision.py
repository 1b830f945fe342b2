"""Multimodal models in training and in transformers' generate (issue 24 item 5): the images a
sequence carries become image tokens of the language model's sequence, and the vision encoder and
projector add their weights, what their layers keep for backward, and the encoder's forward peak.

Which parts train follows transformers 5.25 and peft 0.21 by default:
- full training trains the encoder and projector (every parameter of from_pretrained's model);
- LoRA adapts every linear whose name is a target, the encoder's included (peft matches module names
  by suffix, tuners_utils.py check_target_module_exists): q_proj, k_proj and v_proj are names of the
  SigLIP (Gemma 3) and CLIP (LLaVA) attention too, so the default targets adapt the encoder's attention;
  Qwen2.5-VL's encoder names its attention qkv and proj, and its MLP gate_proj, up_proj and down_proj;
- a frozen encoder keeps nothing for backward unless the input of its first layer needs a gradient:
  peft calls enable_input_require_grads when gradient checkpointing is on (peft_model.py:184-185), and
  transformers 5.25 hooks the input embeddings of every PreTrainedModel inside the model, the vision
  tower's patch embedding among them (modeling_utils.py:2149-2180). The encoder's layers are then
  checkpointed like the decoder's (GradientCheckpointingLayer) and keep their inputs.

Per encoder layer the saved tensors are the text decoder's rules (activations.py) at the encoder's width,
over one image's patches (Gemma 3, LLaVA) or Qwen2.5-VL's packed patches: its attention runs per image
on 4 layers (fullatt_block_indexes) and per 112-pixel window on the others (modeling_qwen2_5_vl.py:
304-331, 466-475), which matters to eager attention's score matrices only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..errors import InputError, MAX_TOKENS
from ..model.image_tokens import QWEN_MERGE, QWEN_PATCH, smart_resize
from ..model.params import default_lora_targets
from ..model.spec import ModelSpec
from ..units import dtype_bytes
from .workload import Framework, Precision, Workload
from .activations import (FP32, INDEX_BYTES, MASK_BYTES, LayerCost, Parts, adapter_inputs_label, consumer_copies, mlp,
                          norm)
from .context import StepContext, make_context, sdpa_kernel
from .optimizers import state_bytes, step_temporary_bytes
from .timeline import Snapshot

QWEN_WINDOW_UNITS = 112 // (QWEN_PATCH * QWEN_MERGE)    # window_size 112 px = 4 merge units a side
QUICK_GELU = "quick_gelu"    # CLIPVisionConfig's default hidden_act: x * sigmoid(1.702 x) (activations.py)
MODELLED = "Gemma 3 (SigLIP), LLaVA (CLIP) and Qwen2.5-VL"
# Module names of each encoder's linears, as peft matches them (attention, MLP)
ENCODER_LINEARS = {"siglip": (("q_proj", "k_proj", "v_proj"), "out_proj", ("fc1",), "fc2"),
                   "clip": (("q_proj", "k_proj", "v_proj"), "out_proj", ("fc1",), "fc2"),
                   "qwen2_5_vl": (("qkv",), "proj", ("gate_proj", "up_proj"), "down_proj")}


@dataclass(frozen=True)
class Images:
    """The images of one sequence through the encoder."""

    count: int                  # images per sequence
    patches: int                # encoder rows of one image (LLaVA: + its CLS token)
    tokens: int                 # language-model tokens of one image
    score_elements: int = 0     # per head, summed over the attention calls of one layer (all images)
    full_score_elements: int = 0   # Qwen2.5-VL's full-attention layers


def images_of(m: ModelSpec, w: Workload) -> Images:
    """The encoder's rows and the language-model tokens of the workload's images."""
    vt, n = m.vision, w.images_per_sample
    if vt.kind == "siglip":
        # Gemma3ImageProcessor resizes to image_size; the projector pools to mm_tokens_per_image
        return Images(n, vt.patches, vt.tokens_per_image, n * vt.patches ** 2)
    if vt.kind == "clip":
        # CLIP's processor resizes and crops to image_size; "default" strategy drops the CLS row
        return Images(n, vt.patches, vt.patches - 1, n * vt.patches ** 2)
    h, wd = smart_resize(w.image_height, w.image_width, where="workload.image_height")
    rows, cols = h // (QWEN_PATCH * QWEN_MERGE), wd // (QWEN_PATCH * QWEN_MERGE)
    units = QWEN_MERGE ** 2
    windows = sum((min(QWEN_WINDOW_UNITS, rows - r) * min(QWEN_WINDOW_UNITS, cols - c) * units) ** 2
                  for r in range(0, rows, QWEN_WINDOW_UNITS) for c in range(0, cols, QWEN_WINDOW_UNITS))
    return Images(n, rows * cols * units, rows * cols, n * windows, n * (rows * cols * units) ** 2)


def with_images(m, w: Workload, f: Framework, par) -> tuple:
    """The model (with a note) and the workload whose sequences carry their image tokens; InputError naming
    the field where images do not apply."""
    if not w.images_per_sample:
        if w.image_height is not None or w.image_width is not None:
            raise InputError("workload.image_height", "applies with workload.images_per_sample")
        return m, w
    vt = getattr(m, "vision", None)
    if vt is None:
        raise InputError("workload.images_per_sample", f"{getattr(m, 'name', 'this model')} is a text-only model (no "
                         f"vision_config); images apply to a multimodal config.json: {MODELLED}")
    if vt.kind not in ENCODER_LINEARS:
        name = {"llama4": "Llama 4's image tiling", "pixtral": "Pixtral's encoder"}.get(vt.kind, "this vision encoder")
        raise InputError("workload.images_per_sample", f"{name} is not modelled in training or transformers' "
                                                       f"generate; {MODELLED} are")
    if vt.kind == "qwen2_5_vl" and (w.image_height is None or w.image_width is None):
        raise InputError("workload.image_height", "Qwen2.5-VL keeps each image's own size (smart_resize, up to "
                                                  "1,280 tokens): give image_height and image_width")
    _check_setup(w, f, par)
    img = images_of(m, w)
    seq = w.seq_len + img.count * img.tokens
    if w.batch_size * seq > MAX_TOKENS:
        raise InputError("workload.images_per_sample", f"batch_size x (seq_len + image tokens) must be at most "
                                                       f"{MAX_TOKENS}, got {w.batch_size * seq}")
    note = (f"each sequence is {w.seq_len} text tokens + {img.count} images x {img.tokens} image tokens = {seq}; the "
            f"vision encoder and projector ({vt.params:,} parameters) run {img.patches} patches per image")
    # the reader's note that a text-only load leaves the encoder out no longer holds
    kept = tuple(x for x in m.warnings if not x.startswith("only the language model (text_config) is counted"))
    if w.mode == "peft":
        note += ("; the adapter config's targets are matched against the language model only: adapters they would "
                 "put in the vision encoder are not counted")
    return replace(m, warnings=kept + (note,)), replace(w, seq_len=seq)


def _check_setup(w: Workload, f: Framework, par) -> None:
    if w.mode == "qlora" or w.peft_nf4_base:
        raise InputError("workload.images_per_sample", "a 4-bit base of a multimodal model (bitsandbytes quantises "
                                                       "the vision encoder's linears too) is not modelled")
    if par.recipe != "hf" or max(par.data_parallel, par.tensor_parallel, par.pipeline_parallel) > 1:
        raise InputError("workload.images_per_sample", "images are modelled on one GPU with recipe hf")
    if f.alloc_conf:
        raise InputError("framework.alloc_conf", "the allocator's replay does not follow the vision encoder; "
                                                 "leave it empty with images")


# ---- the encoder's layers ---------------------------------------------------------------------

def encoder_model(vt) -> ModelSpec:
    """The encoder's layer as a ModelSpec, for the activation rules (no vocabulary, no positions)."""
    qwen = vt.kind == "qwen2_5_vl"
    return ModelSpec(name=f"{vt.kind} vision encoder", family="decoder", n_layers=vt.layers, hidden_size=vt.hidden,
                     ffn_size=vt.ffn, n_heads=vt.heads, n_kv_heads=vt.heads, head_dim=vt.hidden // vt.heads,
                     vocab_size=1, gated_mlp=qwen, qkv_bias=True, o_bias=True, mlp_bias=True,
                     norm="rmsnorm" if qwen else "layernorm", activation="silu" if qwen else "gelu_tanh", fused_qkv=qwen)


def adapted_names(m: ModelSpec, w: Workload) -> frozenset:
    """The encoder's linears that LoRA adapts: the targets' names that the encoder's modules also have."""
    if w.mode != "lora":
        return frozenset()
    attn, out, up, down = ENCODER_LINEARS[m.vision.kind]
    names = set(attn + (out,) + up + (down,))
    if w.lora_targets == "all-linear":
        return frozenset(names)
    return frozenset(names & set(w.lora_targets or default_lora_targets(m)))


def on_grad_path(m: ModelSpec, w: Workload) -> bool:
    """Whether the encoder's forward is recorded for backward (module docstring)."""
    return w.mode == "full" or bool(adapted_names(m, w)) or (w.gradient_checkpointing and w.mode != "inference")


def encoder_context(m: ModelSpec, w: Workload, p: Precision, f: Framework, img: Images) -> StepContext:
    """The step's facts for the encoder: its rows, its kernel, and what of it trains."""
    text = make_context(m, replace(w, seq_len=1, batch_size=1), p, f)
    e = encoder_model(m.vision)
    packed = m.vision.kind == "qwen2_5_vl"
    batch, seq = (1, w.batch_size * img.count * img.patches) if packed else (w.batch_size * img.count, img.patches)
    adapted = adapted_names(m, w)
    if "fc2" in adapted:
        adapted |= {"c_proj"}           # the activation rules name a plain MLP's down projection c_proj
    # packed_mask marks here the one varlen call of flash-attention 2 over Qwen2.5-VL's packed images
    return replace(text, batch=batch, seq=seq, tokens=batch * seq, adapted=adapted, packed_mask=w.attention == "flash",
                   kernel=sdpa_kernel(e, w, f, text.compute_bytes, False), checkpointing=text.checkpointing,
                   training=w.mode != "inference")


def _attention(ctx: StepContext, acc: Parts, e: ModelSpec, vt, scores: int) -> int:
    """q, k, v, the kernel's output and what it keeps (eager: the b x heads x s x s scores; SDPA: the fp32
    log-sum-exp), and an adapted output projection's cast input. Returns the forward transient."""
    cb, T, D = ctx.compute_bytes, ctx.tokens, e.hidden_size
    attn, out, _, _ = ENCODER_LINEARS[vt.kind]
    if vt.kind == "qwen2_5_vl":
        # qkv's output, of which v stays a view; q and k after the rotary embedding are new tensors
        acc.add("encoder attention fused qkv output", 3 * cb * T * D)
        acc.add("encoder attention q, k after rotary", 2 * cb * T * D)
    else:
        acc.add("encoder attention q, k, v", 3 * cb * T * D)
    n = scores * e.n_heads
    if ctx.kernel == "eager":
        acc.add("encoder attention scores: softmax output (fp32)", FP32 * n)
        acc.add("encoder attention scores: dropout mask", MASK_BYTES * n)
        acc.add("encoder attention scores: probabilities", cb * n)
    else:
        acc.add("encoder attention log-sum-exp", FP32 * T * e.n_heads)
    # SDPA keeps its output; eager's output (transposed, made contiguous) is kept by the output projection
    # only as a linear keeps its input (consumer_copies): by the base weight when it trains, by lora_A as itself
    # or as a cast to the adapters' dtype (then the 16-bit output itself is not kept), as the decoder's rule
    # (activations.attention_output). Qwen2.5-VL's SDPA runs per image or window, and torch.cat joins the
    # outputs into the copy proj reads (modeling_qwen2_5_vl.py:314-335); flash-attention 2 takes cu_seqlens
    # in one call.
    if ctx.kernel != "eager":
        acc.add("encoder attention output", cb * T * D)
    if ctx.kernel == "eager" or (vt.kind == "qwen2_5_vl" and not ctx.packed_mask):
        consumer_copies(ctx, acc, "encoder attention output (the output projection's input)", T * D, cb, (out,))
    elif out in ctx.adapted and cb != ctx.adapter_bytes:
        acc.add(adapter_inputs_label(ctx), ctx.adapter_bytes * T * D)
    return 2 * cb * n if ctx.kernel == "eager" else 0


def encoder_layers(ctx: StepContext, m: ModelSpec, img: Images, batch: int) -> list[LayerCost]:
    """One LayerCost per kind of encoder layer (Qwen2.5-VL: windowed, then full attention), for ``batch``
    sequences."""
    vt, e = m.vision, encoder_model(m.vision)
    attn, _, up, _ = ENCODER_LINEARS[vt.kind]
    kinds = [(vt.layers - vt.full_attention_layers - vt.last_layer_unused, img.score_elements)]
    if vt.full_attention_layers:
        kinds.append((vt.full_attention_layers, img.full_score_elements))
    if vt.last_layer_unused:
        kinds.append((1, img.score_elements))
    rb, T = ctx.residual_bytes, ctx.tokens
    out = []
    for index, (count, scores) in enumerate(kinds):
        if count <= 0:
            continue
        acc = Parts.of(ctx)
        norm(ctx, acc, e, rb, attn, "encoder norm1")
        fwd = _attention(ctx, acc, e, vt, batch * scores)
        norm(ctx, acc, e, rb, up, "encoder norm2")
        bwd = mlp(ctx, acc, e, e.ffn_size, T, "encoder MLP")
        if vt.kind == "clip":
            # quick_gelu: sigmoid keeps its output, which the product keeps too (beside its input x)
            acc.add("encoder MLP quick_gelu sigmoid output", ctx.compute_bytes * T * e.ffn_size)
        if vt.last_layer_unused and index == len(kinds) - 1:
            # LLaVA's last layer feeds nothing: measured, its tensors after fc1's output are freed with the
            # encoder's outputs (tests/integration/test_vision_saved.py)
            for name in ("encoder MLP quick_gelu sigmoid output", "encoder MLP down-projection input"):
                acc.items.pop(name, None)
        hidden = rb * T * e.hidden_size
        saved = {k if k.startswith("encoder") else "encoder " + k: v for k, v in acc.items.items()}
        out.append(LayerCost(saved=saved, forward_extra=fwd, backward_extra=bwd + 2 * hidden,
                             checkpoint_input=hidden, count=count))
    return out


def around_layers(ctx: StepContext, m: ModelSpec, img: Images, batch: int) -> dict:
    """What the patch embedding, the encoder's last norm and the projector keep for backward."""
    vt, cb, T, D = m.vision, ctx.compute_bytes, ctx.tokens, m.vision.hidden
    acc = Parts.of(ctx)
    e = encoder_model(vt)
    trains = ctx.base_trainable
    if trains:        # the patch convolution keeps the pixels for its weight's gradient
        pixels = batch * img.count * (vt.pixels if vt.pixels else img.patches * 3 * 2 * QWEN_PATCH ** 2)
        acc.add("encoder patch embedding input (pixels)", cb * pixels)
    rows = batch * img.count * img.tokens           # the projector's output rows, one per image token
    if vt.kind == "siglip":
        # post_layernorm; AvgPool2d keeps its (contiguous) input; Gemma3RMSNorm; the projection keeps its input
        _norm_kept(ctx, acc, e, "encoder post_layernorm")
        acc.add("projector average-pool input", cb * T * D)
        acc.add("projector soft-embedding norm (fp32 input, statistics)", FP32 * rows * (D + 1))
        if trains:
            acc.add("projector soft-embedding norm normalised, projection input", (FP32 + cb) * rows * D)
    elif vt.kind == "clip":
        _norm_kept(ctx, acc, e, "encoder pre_layrnorm")
        if trains:
            acc.add("projector linear_1 input (the feature layer's rows without CLS)", cb * rows * D)
        acc.add("projector GELU input", cb * rows * vt.text_hidden)
        if trains:
            acc.add("projector linear_2 input", cb * rows * vt.text_hidden)
    else:
        # Qwen2.5-VL's merger: ln_q (RMSNorm), 4 patches' rows joined, Linear, GELU, Linear
        # the rotary cos and sin, fp32 and shared by every layer's multiply (apply_rotary_pos_emb_vision), and
        # the int64 window order and its inverse kept by the two index ops (modeling_qwen2_5_vl.py:422-485)
        acc.add("encoder rotary cos and sin (fp32, shared by the layers)", 2 * FP32 * T * (D // vt.heads))
        acc.add("window permutation indices (int64)", 2 * INDEX_BYTES * (T // QWEN_MERGE ** 2))
        _norm_kept(ctx, acc, e, "merger ln_q")
        if trains:
            acc.add("merger first linear input", cb * T * D)
        acc.add("merger GELU input", cb * T * D)
        if trains:
            acc.add("merger second linear input", cb * T * D)
    return dict(acc.items)


def _norm_kept(ctx: StepContext, acc: Parts, e: ModelSpec, label: str) -> None:
    """What a norm keeps of its own (its input and statistics): its output's readers are counted apart."""
    norm(ctx, acc, e, ctx.residual_bytes, (), label)
    acc.items.pop(label + " output", None)


def encoder_working(ctx: StepContext, m: ModelSpec, img: Images, batch: int) -> dict:
    """Peak temporaries of one encoder layer without autograd (the rule of serving/hf.py layer_working_bytes):
    the layer's input and residual, the normalised rows, then the larger of attention's q, k, v and output
    (with eager's scores and their fp32 softmax) and the MLP's intermediates."""
    vt, cb, rb, T, D = m.vision, ctx.compute_bytes, ctx.residual_bytes, ctx.tokens, m.vision.hidden
    scores = batch * max(img.score_elements, img.full_score_elements) * vt.heads
    attn = 4 * cb * T * D + ((cb + FP32) * scores if ctx.kernel == "eager" else 0)
    ffn = (3 if vt.kind == "qwen2_5_vl" else 2) * cb * T * vt.ffn
    return {f"image pixel values ({batch * img.count} images)": cb * batch * img.count * (
                vt.pixels or img.patches * 3 * 2 * QWEN_PATCH ** 2),
            "encoder layer input and hidden states": 2 * rb * T * D, "encoder normalised rows": cb * T * D,
            "encoder attention or MLP intermediates": max(attn, ffn)}


# ---- the step's moments ---------------------------------------------------------------------

def _linear_shapes(vt) -> list[tuple[str, int, int]]:
    """(name, in, out) of one encoder layer's linears."""
    D, I = vt.hidden, vt.ffn
    if vt.kind == "qwen2_5_vl":
        return [("qkv", D, 3 * D), ("proj", D, D), ("gate_proj", D, I), ("up_proj", D, I), ("down_proj", I, D)]
    return [("q_proj", D, D), ("k_proj", D, D), ("v_proj", D, D), ("out_proj", D, D), ("fc1", D, I), ("fc2", I, D)]


@dataclass(frozen=True)
class VisionStates:
    """The encoder's and projector's model states on the GPU."""

    weights: dict               # name -> bytes
    trainable: int              # parameters that get gradients
    param_bytes: int            # bytes of each trainable parameter (and its gradient)
    optimizer_states: int
    optimizer_temp: int
    autocast_copies: int        # 16-bit casts of the encoder's linears under autocast (full training)


def vision_states(m: ModelSpec, w: Workload, p: Precision, f: Framework) -> VisionStates:
    vt = m.vision
    stored = dtype_bytes(p.compute()) if w.mode == "inference" else dtype_bytes(p.weights)
    weights = {"vision encoder and projector": vt.params * stored}
    adapted = adapted_names(m, w)
    if w.mode == "full":
        trainable, pb = vt.params, dtype_bytes(p.weights)
        shapes = [((o, i), vt.layers) for _, i, o in _linear_shapes(vt)] + [((vt.replicated,), 1)]
    elif adapted:
        pb = make_context(m, replace(w, seq_len=1, batch_size=1), p, f).adapter_bytes
        shapes = [s for name, i, o in _linear_shapes(vt) if name in adapted
                  for s in (((w.lora_rank, i), vt.layers), ((o, w.lora_rank), vt.layers))]
        trainable = sum(math.prod(s) * n for s, n in shapes)
        weights["vision encoder LoRA adapters"] = trainable * pb
    else:
        return VisionStates(weights, 0, 0, 0, 0, 0)
    largest = max(math.prod(s) for s, _ in shapes)
    amp = dtype_bytes(p.autocast) * vt.sharded if p.autocast and w.mode == "full" else 0
    torch = tuple(int(x) for x in f.torch.split(".")[:2]) + (0,)
    return VisionStates(weights, trainable, pb, state_bytes(w.optimizer, trainable, pb, shapes),
                        step_temporary_bytes(w.optimizer, trainable, pb, largest, torch), amp)


def _merged(snap: Snapshot, additions: dict, moment: str | None = None, replace_parts: dict | None = None,
            phase: str | None = None) -> Snapshot:
    """The snapshot with ``additions`` ({category: {name: bytes}}) added and ``replace_parts`` replacing
    whole categories (an empty dict drops one)."""
    parts, seen = [], set()
    for cat, items in snap.parts:
        if replace_parts is not None and cat in replace_parts:
            items = replace_parts[cat]
        items = {**items, **{k: items.get(k, 0) + v for k, v in additions.get(cat, {}).items()}}
        seen.add(cat)
        if items:
            parts.append((cat, items))
    parts += [(cat, dict(items)) for cat, items in additions.items() if cat not in seen and any(items.values())]
    return Snapshot(phase or snap.phase, moment or snap.moment, tuple(parts))


def _category(snap: Snapshot, cat: str) -> dict:
    return {k: v for c, items in snap.parts if c == cat for k, v in items.items()}


def encoder_saved(m: ModelSpec, w: Workload, p: Precision, f: Framework, checkpointing: bool) -> tuple:
    """The encoder's layers and what the encoder and projector keep from forward to backward, by name
    (none when the encoder is off the gradient's path)."""
    if not on_grad_path(m, w):
        return [], {}
    img = images_of(m, w)
    ctx = encoder_context(m, w, p, f, img)
    layers = encoder_layers(ctx, m, img, w.batch_size)
    kept = around_layers(ctx, m, img, w.batch_size)
    for lc in layers:
        for k, v in (lc.saved.items() if not checkpointing else
                     (("vision encoder checkpointed layer inputs", lc.checkpoint_input),)):
            kept[k] = kept.get(k, 0) + lc.count * v
    return layers, kept


def with_vision_training(snaps: list, m: ModelSpec, w: Workload, p: Precision, f: Framework,
                         checkpointing: bool, grads_in_forward: bool) -> list:
    """The language model's moments with the encoder's states and saved activations, and the encoder's own
    two busiest moments: its last layer's forward and its first layer's backward (the end of backward)."""
    if not w.images_per_sample or m.vision is None:
        return snaps
    img = images_of(m, w)
    st = vision_states(m, w, p, f)
    grads = {"vision encoder gradients": st.trainable * st.param_bytes}
    ctx = encoder_context(m, w, p, f, img)
    layers, kept = encoder_saved(m, w, p, f, checkpointing)
    first, last = (layers[0], layers[-1]) if layers else (None, None)
    static = {"weights": st.weights, "optimizer states": _nz({"vision encoder optimizer states": st.optimizer_states})}
    if grads_in_forward:
        static["gradients"] = grads
    out = []
    for s in snaps:
        add = dict(static)
        if s.phase in ("forward", "backward"):
            add["activations"] = kept
        if s.phase == "optimizer step":
            add.update(gradients=grads, temporaries={"vision encoder optimizer temporaries": st.optimizer_temp})
        out.append(_merged(s, add))
    base = out[0]
    work = encoder_working(ctx, m, img, w.batch_size) if not layers else {
        "encoder layer working memory": last.forward_extra,
        **({"encoder layer activations (not kept under checkpointing)": last.saved_total()} if checkpointing else {})}
    out.insert(0, _merged(base, {"autocast weight copies": _nz({"16-bit encoder weight copies": st.autocast_copies})},
                          "vision encoder's last layer forward", {"activations": kept, "temporaries": work,
                                                                  "autocast weight copies": {}, "logits and loss": {}}))
    if layers:
        end = next(s for s in reversed(out) if s.phase == "backward")
        acts = {**first.saved, **({"vision encoder checkpointed layer inputs": first.checkpoint_input}
                                  if checkpointing else {})}
        all_grads = _category(out[-1], "gradients")
        out.insert(len(out) - 1, _merged(end, {}, "vision encoder's first layer backward", {
            "activations": acts, "gradients": all_grads, "temporaries": {"activation gradients": first.backward_extra}}))
    return out


def _nz(d: dict) -> dict:
    return {k: v for k, v in d.items() if v}
