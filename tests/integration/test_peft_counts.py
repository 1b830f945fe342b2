"""Every modelled PEFT type's trainable-parameter count against peft 0.21.2's own count.

For each case the real library builds the adapter with get_peft_model on a small randomly initialised
model (tiny Llama, GPT-2 or BERT built from a config) and counts sum(p.numel() for p in parameters() if
p.requires_grad); the core reads the same adapter_config.json (the config's to_dict()) and the model's
config.json, and must give the same number, exactly.
"""

import json
import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from pycore.model.hfconfig import read_hf_config  # noqa: E402
from pycore.training.adapters import adapter_plan  # noqa: E402
from pycore.training.peft_config import PEFT_TYPES, REFUSED, parse_peft_config  # noqa: E402

LLAMA = dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=128, max_position_embeddings=64)
GPT2 = dict(model_type="gpt2", n_embd=64, n_layer=2, n_head=4, vocab_size=128, n_positions=64)
BERT = dict(model_type="bert", hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
            vocab_size=128, max_position_embeddings=64)
QV = ["q_proj", "v_proj"]
ALL = "all-linear"

# (case id, model, PeftType, config keywords). At least one case per modelled type.
CASES = [
    ("lora", "llama", "LORA", dict(r=4, target_modules=QV)),
    ("lora-all-linear", "llama", "LORA", dict(r=8, target_modules=ALL)),
    ("lora-regex", "llama", "LORA", dict(r=4, target_modules=r".*\.1\.self_attn\.(q|k)_proj")),
    ("lora-layers", "llama", "LORA", dict(r=4, target_modules=["q_proj", "down_proj"], layers_to_transform=[1])),
    ("lora-rank-pattern", "llama", "LORA", dict(r=4, target_modules=ALL, rank_pattern={"down_proj": 16, "q_proj": 2},
                                                 alpha_pattern={"down_proj": 32})),
    ("lora-modules-to-save", "llama", "LORA", dict(r=4, target_modules=QV, modules_to_save=["lm_head"])),
    ("lora-trainable-tokens", "llama", "LORA", dict(r=4, target_modules=QV, trainable_token_indices=[1, 2, 3])),
    ("lora-exclude", "llama", "LORA", dict(r=4, target_modules=ALL, exclude_modules=["o_proj", "up_proj"])),
    ("lora-bias", "llama", "LORA", dict(r=4, target_modules=QV, lora_bias=True)),
    ("dora", "llama", "LORA", dict(r=4, target_modules=ALL, use_dora=True)),
    ("lora-gpt2", "gpt2", "LORA", dict(r=4, target_modules=["c_attn", "c_proj"], fan_in_fan_out=True)),
    ("lora-gpt2-bias-all", "gpt2", "LORA", dict(r=4, target_modules=["c_attn"], fan_in_fan_out=True, bias="all")),
    ("lora-bert-default", "bert", "LORA", dict(r=4)),
    ("lora-bert-all", "bert", "LORA", dict(r=4, target_modules=ALL, bias="lora_only")),
    ("adalora", "llama", "ADALORA", dict(init_r=6, target_r=4, total_step=100, target_modules=QV)),
    ("loha", "llama", "LOHA", dict(r=4, target_modules=ALL)),
    ("lokr", "llama", "LOKR", dict(r=4, target_modules=ALL)),
    ("lokr-both", "llama", "LOKR", dict(r=2, decompose_both=True, decompose_factor=4, target_modules=ALL)),
    ("oft", "llama", "OFT", dict(r=0, oft_block_size=8, target_modules=ALL)),
    ("oft-r", "llama", "OFT", dict(r=4, oft_block_size=0, block_share=True, target_modules=QV)),
    ("boft", "llama", "BOFT", dict(boft_block_size=8, target_modules=QV)),
    ("ia3", "llama", "IA3", dict(target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"])),
    ("ia3-default", "llama", "IA3", dict()),
    ("vera", "llama", "VERA", dict(r=16, target_modules=QV)),
    ("pvera", "llama", "PVERA", dict(r=16, target_modules=QV)),
    ("fourierft", "llama", "FOURIERFT", dict(n_frequency=100, target_modules=QV, n_frequency_pattern={"v_proj": 50})),
    ("waveft", "llama", "WAVEFT", dict(n_frequency=64, target_modules=QV)),
    ("hra", "llama", "HRA", dict(r=4, target_modules=ALL)),
    ("hira", "llama", "HIRA", dict(r=4, target_modules=ALL)),
    ("shira", "llama", "SHIRA", dict(r=4, target_modules=QV)),
    ("c3a", "llama", "C3A", dict(block_size=16, target_modules=ALL)),
    ("delora", "llama", "DELORA", dict(r=4, target_modules=ALL)),
    ("gralora", "llama", "GRALORA", dict(r=4, hybrid_r=2, gralora_k=2, target_modules=ALL)),
    ("miss", "llama", "MISS", dict(r=8, target_modules=QV)),
    ("miss-mini", "llama", "MISS", dict(r=8, mini_r=4, init_weights="mini", target_modules=QV)),
    ("randlora", "llama", "RANDLORA", dict(r=16, target_modules=ALL)),
    ("road", "llama", "ROAD", dict(variant="road_2", group_size=16, target_modules=QV)),
    ("vblora", "llama", "VBLORA", dict(r=2, num_vectors=16, vector_length=16, target_modules=ALL)),
    ("unilora", "llama", "UNILORA", dict(r=2, theta_d_length=128, target_modules=QV)),
    ("peanut", "llama", "PEANUT", dict(r=8, depth=1, target_modules=QV)),
    ("deft", "llama", "DEFT", dict(r=4, target_modules=ALL)),
    ("deft-para", "llama", "DEFT", dict(r=4, para=True, target_modules=QV)),
    ("lily", "llama", "LILY", dict(r=4, num_B=2, stride_A=2, target_modules=["q_proj", "v_proj", "down_proj"])),
    ("poly", "llama", "POLY", dict(r=4, n_skills=2, n_tasks=3, target_modules=QV)),
    ("glora", "bert", "GLORA", dict(r=4, target_modules=["query", "value"], config_D_E="vector")),
    ("glora-no-bias", "llama", "GLORA", dict(r=4, target_modules=QV, config_C="vector")),
    ("beft", "bert", "BEFT", dict(target_modules=["query", "output.dense"])),
    ("ln-tuning", "llama", "LN_TUNING", dict()),
    ("trainable-tokens", "llama", "TRAINABLE_TOKENS", dict(token_indices=[0, 5, 7], target_modules=["embed_tokens"])),
    ("prompt-tuning", "llama", "PROMPT_TUNING", dict(num_virtual_tokens=10)),
    ("multitask-prompt", "llama", "MULTITASK_PROMPT_TUNING", dict(num_virtual_tokens=6, num_tasks=3, num_ranks=2)),
    ("p-tuning-mlp", "llama", "P_TUNING", dict(num_virtual_tokens=5, encoder_hidden_size=32)),
    ("p-tuning-lstm", "llama", "P_TUNING", dict(num_virtual_tokens=5, encoder_hidden_size=16,
                                                encoder_reparameterization_type="LSTM")),
    ("prefix-tuning", "llama", "PREFIX_TUNING", dict(num_virtual_tokens=8)),
    ("prefix-tuning-projection", "llama", "PREFIX_TUNING", dict(num_virtual_tokens=8, prefix_projection=True,
                                                                 encoder_hidden_size=24)),
    ("prefix-tuning-gpt2", "gpt2", "PREFIX_TUNING", dict(num_virtual_tokens=4)),
    ("cartridge", "llama", "CARTRIDGE", dict(num_virtual_tokens=6, num_frozen_tokens=2)),
    ("cpt", "llama", "CPT", dict(cpt_token_ids=[3, 4, 5, 6], cpt_mask=[1, 1, 1, 1],
                                cpt_tokens_type_mask=[1, 2, 2, 3])),
    ("adaption-prompt", "llama", "ADAPTION_PROMPT", dict(adapter_len=4, adapter_layers=2)),
]

MODELS = {"llama": LLAMA, "gpt2": GPT2, "bert": BERT}


def _build(kind: str):
    cfg = transformers.AutoConfig.for_model(**MODELS[kind])
    cls = transformers.BertForMaskedLM if kind == "bert" else transformers.AutoModelForCausalLM
    torch.manual_seed(0)
    return cls.from_config(cfg) if kind != "bert" else cls(cfg), cfg


@pytest.fixture(scope="module")
def core_models():
    out = {}
    for kind in MODELS:
        _, cfg = _build(kind)
        out[kind] = read_hf_config(json.loads(cfg.to_json_string()))
    return out


def _peft_count(kind: str, peft_type: str, kw: dict) -> tuple[int, dict]:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
    config_cls = PEFT_TYPE_TO_CONFIG_MAPPING[peft.PeftType[peft_type]]
    task = {"bert": None}.get(kind, "CAUSAL_LM")
    extra = {"task_type": task} if task else {}
    config = config_cls(**extra, **kw)
    model, _ = _build(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = peft.get_peft_model(model, config)
    count = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    # save_pretrained writes sets as lists (peft/config.py to_dict / save_pretrained)
    as_dict = {k: sorted(v) if isinstance(v, set) else v for k, v in config.to_dict().items()}
    return count, json.loads(json.dumps(as_dict, default=str))


@pytest.mark.parametrize("case, kind, peft_type, kw", CASES, ids=[c[0] for c in CASES])
def test_trainable_parameters_match_peft(core_models, case, kind, peft_type, kw):
    expected, as_json = _peft_count(kind, peft_type, kw)
    plan = adapter_plan(core_models[kind], parse_peft_config("peft_config", as_json))
    assert plan.trainable == expected


def test_every_peft_type_is_read_and_at_least_thirty_are_modelled():
    assert set(PEFT_TYPES) == {t.value for t in peft.PeftType}
    modelled = set(PEFT_TYPES) - set(REFUSED)
    assert len(modelled) >= 30
    tested = {c[2] for c in CASES}
    assert modelled == tested, sorted(modelled ^ tested)


BUFFER_CASES = [c for c in CASES if c[0] in ("vera", "pvera", "boft", "randlora", "cpt", "cartridge", "unilora", "oft",
                                              "lora", "loha", "c3a", "vblora")]


def _frozen(model) -> int:
    seen, n = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        if id(t) not in seen and not t.requires_grad:
            seen.add(id(t))
            n += t.numel()
    return n


@pytest.mark.parametrize("case, kind, peft_type, kw", BUFFER_CASES, ids=[c[0] for c in BUFFER_CASES])
def test_frozen_adapter_tensors_match_peft(core_models, case, kind, peft_type, kw):
    """What PEFT adds that does not train (projections, permutations, frozen prompt rows, index tensors),
    in elements: everything frozen after get_peft_model less the base model's own parameters and buffers."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
    model, _ = _build(kind)
    base = sum(p.numel() for p in model.parameters()) + _frozen(model)
    config = PEFT_TYPE_TO_CONFIG_MAPPING[peft.PeftType[peft_type]](task_type="CAUSAL_LM", **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = peft.get_peft_model(model, config)
    as_dict = {k: sorted(v) if isinstance(v, set) else v for k, v in config.to_dict().items()}
    plan = adapter_plan(core_models[kind], parse_peft_config("peft_config", json.loads(json.dumps(as_dict, default=str))))
    assert _frozen(peft_model) - base == plan.frozen_buffers + plan.index_elements
