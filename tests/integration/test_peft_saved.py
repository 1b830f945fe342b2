"""What each PEFT adapter keeps for backward, against what autograd really keeps (CPU, peft 0.21.2).

A one-linear model (256 -> 128, bf16) gets the adapter; a bf16 input of 64 tokens that requires grad (as
a layer's input does) runs forward under torch.autograd.graph.saved_tensors_hooks, and the tensors still
alive after forward are summed, parameters and buffers left out. The core's
module_saved_bytes for the same module must match within what it does not model: the rank-wide
intermediates (lora_A's output and the like) and weight-factor tensors (VB-LoRA's top-k gathers), at most
5% here, or 16 KiB.

Dropout is left out: on the CPU native_dropout's mask has the input's dtype, on CUDA it is bool
(aten/src/ATen/native/cuda/Dropout.cu), which the core models.
"""

import warnings
import weakref

import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from pycore.training.adapters import OWN_DTYPE_INPUT, module_saved_bytes  # noqa: E402
from pycore.training.peft_config import parse_peft_config  # noqa: E402
from pycore.training.peft_targets import Module  # noqa: E402

IN, OUT, T = 256, 128, 64
CASES = [
    ("lora", "LORA", dict(r=2)),
    ("dora", "LORA", dict(r=2, use_dora=True)),
    ("adalora", "ADALORA", dict(init_r=4, target_r=2, total_step=10)),
    ("loha", "LOHA", dict(r=2)),
    ("lokr", "LOKR", dict(r=2)),
    ("ia3", "IA3", dict(feedforward_modules=[])),
    ("ia3-feedforward", "IA3", dict(feedforward_modules=["lin"])),
    ("hira", "HIRA", dict(r=2)),
    ("fourierft", "FOURIERFT", dict(n_frequency=100)),
    ("waveft", "WAVEFT", dict(n_frequency=100)),
    ("oft", "OFT", dict(r=0, oft_block_size=16)),
    ("boft", "BOFT", dict(boft_block_size=16)),
    ("hra", "HRA", dict(r=2)),
    ("hra-r4", "HRA", dict(r=4)),
    ("c3a", "C3A", dict(block_size=16)),
    ("delora", "DELORA", dict(r=2)),
    ("gralora", "GRALORA", dict(r=2)),
    ("shira", "SHIRA", dict(r=2)),
    ("randlora", "RANDLORA", dict(r=16)),
    ("road", "ROAD", dict(group_size=16)),
    ("miss", "MISS", dict(r=8)),
    ("glora", "GLORA", dict(r=2)),
    ("peanut", "PEANUT", dict(r=2)),
    ("deft", "DEFT", dict(r=2)),
    ("beft", "BEFT", dict()),
    ("vblora", "VBLORA", dict(r=2, vector_length=16, num_vectors=16)),
    ("vera", "VERA", dict(r=16)),
    ("pvera", "PVERA", dict(r=16)),
    ("unilora", "UNILORA", dict(r=2, theta_d_length=64)),
]


class One(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(IN, OUT, bias=False)

    def forward(self, x):
        return self.lin(x)


def _kept_by_autograd(peft_type: str, kw: dict) -> tuple[int, bool, dict]:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
    torch.manual_seed(0)
    config = PEFT_TYPE_TO_CONFIG_MAPPING[peft.PeftType[peft_type]](target_modules=["lin"], **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = peft.get_peft_model(One().to(torch.bfloat16), config)
    model.train()
    own = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    x = torch.randn(T, IN, dtype=torch.bfloat16, requires_grad=True)
    refs = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: refs.append(weakref.ref(t)) or t, lambda t: t):
        y = model(x)
    # transient sub-graphs (DoRA's detached norm, ...) are freed by reference counting when forward returns
    alive, x_kept = {}, False
    for ref in refs:
        t = ref()
        if t is None or t.is_sparse:
            continue
        ptr = t.untyped_storage().data_ptr()
        if ptr == x.untyped_storage().data_ptr():
            x_kept = True
        elif ptr not in own:
            alive[ptr] = t.untyped_storage().nbytes()
    assert y.requires_grad
    return sum(alive.values()), x_kept, {k: (v if not isinstance(v, set) else sorted(v)) for k, v in config.to_dict().items()}


@pytest.mark.parametrize("case, peft_type, kw", CASES, ids=[c[0] for c in CASES])
def test_what_the_adapter_keeps_matches_autograd(case, peft_type, kw):
    measured, x_kept, as_dict = _kept_by_autograd(peft_type, kw)
    if peft_type in OWN_DTYPE_INPUT:
        assert x_kept                                   # the input itself, in bf16
        measured += T * IN * 2
    cfg = parse_peft_config("peft_config", {k: v for k, v in as_dict.items() if not callable(v)})
    modelled = module_saved_bytes(cfg, Module("lin", "linear", IN, OUT, False), T, 2, 4)
    assert modelled <= measured <= modelled + max(16384, modelled // 20), (measured, modelled)
