"""The planner's device map against the real libraries' own placement on meta-device models.

The real side: a small but real config of each architecture is built with
``accelerate.init_empty_weights()`` + ``AutoModelForCausalLM.from_config`` in bf16 (no weights are
allocated), and placed
- by transformers 5.25's ``integrations.accelerate._get_device_map(model, strategy, max_memory, None)``,
  the function ``from_pretrained(device_map=...)`` calls (modeling_utils.py:4464 @5.25.0), and
- by accelerate 1.16's ``get_balanced_memory`` + ``infer_auto_device_map`` (what transformers 4.x
  called), after ``model.tie_weights()`` as accelerate asks.

This machine has no GPU. Both libraries take an explicit ``max_memory`` as given: accelerate's
``get_max_memory`` only logs that devices 0 and 1 are not available and keeps their budgets
(modeling.py:836-839 @1.16.0), and transformers adds the allocator's unused reserve only when CUDA is
available (integrations/accelerate.py:215-222 @5.25.0). So with max_memory given, the placement is
the same arithmetic a two-GPU machine runs, and no monkeypatching of torch.cuda is needed. Budgets
are fractions of the model's own size, so that the boundaries fall inside the layer stack and the CPU
and disk are used.

bitsandbytes checkpoints go through transformers' own Bnb4BitHfQuantizer / Bnb8BitHfQuantizer (their
element sizes and their max_memory x 0.9); only which parameters they quantise is told to them, since
bitsandbytes itself is not installed (see _bnb_quantizer).

The planner side reads the same config.json through pycore's reader, so the sizes are pycore's own
parameter counts, not the library's.
"""

from __future__ import annotations

import logging
import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
accelerate = pytest.importorskip("accelerate")

from accelerate import init_empty_weights  # noqa: E402
from accelerate.utils import get_balanced_memory as acc_balanced  # noqa: E402
from accelerate.utils import infer_auto_device_map as acc_infer  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402
from transformers.integrations.accelerate import _get_device_map  # noqa: E402

from pycore.model.hfconfig import read_hf_config  # noqa: E402
from pycore.serving.device_map import device_of, infer_device_map, module_sizes, strategy_memory  # noqa: E402
from pycore.model.formats import NONE  # noqa: E402
from pycore.serving.module_tree import layer_prefix, model_tree, part_names, tied_groups  # noqa: E402

TF = tuple(int(x) for x in transformers.__version__.split(".")[:3])
BEFORE_5 = (4, 57, 1)

CONFIGS = {
    "llama": dict(model_type="llama", hidden_size=512, intermediate_size=1376, num_hidden_layers=12,
                  num_attention_heads=8, num_key_value_heads=2, vocab_size=8000, tie_word_embeddings=False),
    "qwen2": dict(model_type="qwen2", hidden_size=384, intermediate_size=1024, num_hidden_layers=10,
                  num_attention_heads=6, num_key_value_heads=2, vocab_size=6000, tie_word_embeddings=True),
    "mistral": dict(model_type="mistral", hidden_size=512, intermediate_size=1792, num_hidden_layers=9,
                    num_attention_heads=8, num_key_value_heads=4, vocab_size=6000, tie_word_embeddings=False),
    "gemma": dict(model_type="gemma", hidden_size=256, intermediate_size=1024, num_hidden_layers=8,
                  num_attention_heads=4, num_key_value_heads=1, head_dim=64, vocab_size=4000),
    "mixtral": dict(model_type="mixtral", hidden_size=256, intermediate_size=512, num_hidden_layers=8,
                    num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                    vocab_size=3000, tie_word_embeddings=False),
    # two dense layers, then MoE layers (larger): the largest layer is not the first
    "deepseek_v3": dict(model_type="deepseek_v3", hidden_size=256, intermediate_size=512, moe_intermediate_size=128,
                        num_hidden_layers=8, first_k_dense_replace=2, n_routed_experts=8, n_shared_experts=1,
                        num_experts_per_tok=2, n_group=1, topk_group=1, num_attention_heads=4, num_key_value_heads=4,
                        q_lora_rank=64, kv_lora_rank=32, qk_nope_head_dim=32, qk_rope_head_dim=16, v_head_dim=32,
                        vocab_size=3000, tie_word_embeddings=False),
    "gpt2": dict(model_type="gpt2", n_embd=384, n_layer=8, n_head=6, n_positions=1024, vocab_size=5000,
                 bos_token_id=0, eos_token_id=0),
}
# (GPU 0, GPU 1, CPU) as fractions of the model's bytes: room for all (two GPUs), and tight GPUs that
# push layers to the CPU and the disk.
SPLITS = {"roomy": (0.7, 0.7, None), "offload": (0.35, 0.3, 0.4)}


def _real_model(cfg: dict):
    config = AutoConfig.for_model(**cfg)
    with init_empty_weights():
        return AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)


def _budgets(total: int, split) -> dict:
    g0, g1, cpu = split
    out = {0: int(g0 * total), 1: int(g1 * total)}
    if cpu is not None:
        out["cpu"] = int(cpu * total)
    return out


def _names(m) -> list:
    parts = part_names(m)
    return [parts["embedding"]] + [f"{layer_prefix(m)}.{i}" for i in range(m.n_layers)] + [parts["final norm"],
                                                                                            parts["head"]]


def _quiet(fn, *args, **kwargs):
    logging.getLogger("accelerate").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_the_tree_has_the_real_models_module_sizes(arch):
    model = _real_model(CONFIGS[arch])
    ours = module_sizes(model_tree(read_hf_config(AutoConfig.for_model(**CONFIGS[arch]).to_dict(), arch), NONE, 2))
    real, _ = transformers.integrations.accelerate.compute_module_sizes(model, None, only_modules=False)
    m = read_hf_config(AutoConfig.for_model(**CONFIGS[arch]).to_dict(), arch)
    # the model, the layer stack, every layer, the embedding, the final norm and the head (a tied head
    # is not counted by transformers: absent there, 0 here); the names inside a layer are not modelled
    for name in ["", layer_prefix(m), *_names(m)]:
        assert ours.get(name, 0) == real.get(name, 0), name


@pytest.mark.parametrize("split", sorted(SPLITS))
@pytest.mark.parametrize("strategy", ["auto", "sequential", "balanced_low_0"])
@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_layer_boundaries_equal_transformers_from_pretrained(arch, strategy, split):
    model = _real_model(CONFIGS[arch])
    m = read_hf_config(AutoConfig.for_model(**CONFIGS[arch]).to_dict(), arch)
    tree = model_tree(m, NONE, 2)
    budgets = _budgets(module_sizes(tree)[""], SPLITS[split])
    real = _quiet(_get_device_map, model, strategy, dict(budgets), None)
    mem = strategy_memory(tree, strategy, budgets, True, TF)
    ours = infer_device_map(tree, mem, tied_groups(m), TF)
    got = [device_of(ours, n) for n in _names(m)]
    want = [device_of(real, n) for n in _names(m)]
    assert got == want
    assert len(set(want)) > 1          # the case splits the model


@pytest.mark.parametrize("split", sorted(SPLITS))
@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_layer_boundaries_equal_accelerates_own_functions(arch, split):
    model = _real_model(CONFIGS[arch])
    model.tie_weights()
    m = read_hf_config(AutoConfig.for_model(**CONFIGS[arch]).to_dict(), arch)
    tree = model_tree(m, NONE, 2)
    budgets = _budgets(module_sizes(tree)[""], SPLITS[split])
    no_split = list(model._no_split_modules)
    balanced = _quiet(acc_balanced, model, max_memory=dict(budgets), no_split_module_classes=no_split)
    real = _quiet(acc_infer, model, max_memory=balanced, no_split_module_classes=no_split)
    mem = strategy_memory(tree, "auto", budgets, True, BEFORE_5)
    assert mem == {k: int(v) for k, v in balanced.items()}
    ours = infer_device_map(tree, mem, tied_groups(m), BEFORE_5)
    assert [device_of(ours, n) for n in _names(m)] == [device_of(real, n) for n in _names(m)]


def _bnb_quantizer(bits: int):
    """transformers' own bitsandbytes quantizer (its element size and its max_memory x 0.9), told which
    parameters it quantises without importing bitsandbytes: the weights of the linear layers except the
    head (replace_with_bnb_linear skips the output embedding), as Linear4bit / Linear8bitLt would be."""
    from transformers import BitsAndBytesConfig
    from transformers.pytorch_utils import Conv1D
    from transformers.quantizers.quantizer_bnb_4bit import Bnb4BitHfQuantizer
    from transformers.quantizers.quantizer_bnb_8bit import Bnb8BitHfQuantizer
    base = Bnb4BitHfQuantizer if bits == 4 else Bnb8BitHfQuantizer

    class Quantizer(base):
        def param_needs_quantization(self, model, param_name, **kwargs):
            module_name, _, tensor = param_name.rpartition(".")
            module = model.get_submodule(module_name)
            return (isinstance(module, (torch.nn.Linear, Conv1D)) and tensor == "weight"
                    and module_name not in ("lm_head", "embed_out"))

        def validate_environment(self, *args, **kwargs):      # bitsandbytes is not installed here
            return None

    config = BitsAndBytesConfig(load_in_4bit=True) if bits == 4 else BitsAndBytesConfig(load_in_8bit=True)
    return Quantizer(config)


# The 16-bit embedding and head weigh more in a 4-bit model: the offload case gives the GPUs more.
BNB_SPLITS = {"roomy": (0.7, 0.7, None), "offload": (0.5, 0.4, 0.45)}


@pytest.mark.parametrize("split", sorted(BNB_SPLITS))
@pytest.mark.parametrize("fmt", ["bnb-nf4", "bnb-int8"])
@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen2"])
def test_bitsandbytes_checkpoints_are_placed_at_the_quantizers_sizes(arch, fmt, split):
    from pycore.model.formats import named_format
    model = _real_model(CONFIGS[arch])
    m = read_hf_config(AutoConfig.for_model(**CONFIGS[arch]).to_dict(), arch)
    tree = model_tree(m, named_format(fmt), 2)
    # budgets as fractions of the size the quantizer counts (transformers' float sizes: 0.5 x numel)
    budgets = _budgets(module_sizes(tree)[""], BNB_SPLITS[split])
    real = _quiet(_get_device_map, model, "auto", dict(budgets), _bnb_quantizer(4 if fmt == "bnb-nf4" else 8))
    mem = strategy_memory(tree, "auto", budgets, True, TF, bnb=True)
    ours = infer_device_map(tree, mem, tied_groups(m), TF)
    want = [device_of(real, n) for n in _names(m)]
    assert [device_of(ours, n) for n in _names(m)] == want
    assert len(set(want)) > 1


@pytest.mark.parametrize("low_zero", [False, True])
@pytest.mark.parametrize("arch", sorted(CONFIGS))
def test_balanced_budgets_equal_transformers_get_balanced_memory(arch, low_zero):
    """The budgets themselves, to the byte: each GPU but the last capped at total / n + 1.25 x buffer.
    DeepSeek-V3's MoE layers are larger than its first (dense) ones, which the buffer rule of 5.14+
    takes into account (the first layer's size would give another budget)."""
    from transformers.integrations.accelerate import get_balanced_memory as tf_balanced
    model = _real_model(CONFIGS[arch])
    m = read_hf_config(AutoConfig.for_model(**CONFIGS[arch]).to_dict(), arch)
    tree = model_tree(m, NONE, 2)
    budgets = {0: 10 ** 12, 1: 10 ** 12, 2: 10 ** 12, "cpu": 10 ** 12}
    real = _quiet(tf_balanced, model, max_memory=dict(budgets), no_split_module_classes=model._no_split_modules,
                  hf_quantizer=None, low_zero=low_zero)
    ours = strategy_memory(tree, "balanced_low_0" if low_zero else "auto", budgets, True, TF)
    assert ours == {k: int(v) for k, v in real.items()}
