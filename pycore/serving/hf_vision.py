"""transformers' generate on a multimodal model (issue 24 item 5): the vision encoder and projector load
with the language model, and the prompt pass first runs the encoder over the images, one layer at a time
without autograd, before the language model reads the image tokens (pycore/training/vision.py)."""

from __future__ import annotations

from ..model.spec import ModelSpec
from ..training.timeline import Snapshot
from ..training.vision import encoder_context, encoder_working, images_of, vision_states
from ..training.workload import Framework, Precision, Workload


def with_vision_inference(snaps: list, m: ModelSpec, w: Workload, p: Precision, f: Framework) -> list:
    """The moments of generate with the encoder's weights in each, and the encoder's forward before the
    prompt pass: its last layer's temporaries beside the weights (and a StaticCache, allocated first)."""
    if not w.images_per_sample or m.vision is None:
        return snaps
    img = images_of(m, w)
    weights = vision_states(m, w, p, f).weights
    out = [Snapshot(s.phase, s.moment, tuple((c, {**d, **weights} if c == "weights" else d) for c, d in s.parts))
           for s in snaps]
    ctx = encoder_context(m, w, p, f, img)
    keep = tuple((c, d) for c, d in out[0].parts if c in ("weights", "framework buffers") or
                 (c == "KV cache" and any(k.startswith("static") for k in d)))
    work = encoder_working(ctx, m, img, w.batch_size)
    return [Snapshot(out[0].phase, "vision encoder's forward on the images", keep + (("temporaries", work),))] + out
