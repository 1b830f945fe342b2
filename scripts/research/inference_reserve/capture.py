"""Capture the tensor allocation/free order of HF inference on CPU with a tiny model.

Run with transformers 5.17 (the version the calibration used):
  PYTHONPATH=tf517:deps  .venv-int/bin/python   # transformers 5.17.0's sdist unpacked in tf517/, httpx in deps/ (run_captures.sh)
    capture.py llama sdpa 4 > traces/llama.txt

Every aten op's outputs (TorchDispatchMode) whose storage is new are allocations; a storage's death
(StorageWeakRef expired, polled before each op and at the end) is a free. Each line:
  + id nbytes dtype shape op module     /    - id
The module is the innermost nn.Module whose forward was running ("-" outside the model = generate).
"""
import sys
import json

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._pytree import tree_flatten

# distinguishable tiny dims (every product that appears as a shape entry is a distinct number)
B, S = 3, 23            # batch, prompt
HID, INTER = 52, 37     # hidden, intermediate
NH, KVH, HD = 4, 2, 10  # heads, kv heads, head_dim
V = 97
L = int(__import__("os").environ.get("TINY_L", "3"))

CFGS = {
    "llama": dict(hidden_size=HID, intermediate_size=INTER, num_hidden_layers=L, num_attention_heads=NH,
                  num_key_value_heads=KVH, head_dim=HD, vocab_size=V, tie_word_embeddings=False),
    "qwen2": dict(hidden_size=40, intermediate_size=INTER, num_hidden_layers=L, num_attention_heads=NH,
                  num_key_value_heads=KVH, vocab_size=V, tie_word_embeddings=False, use_sliding_window=False),
    "mistral": dict(hidden_size=HID, intermediate_size=INTER, num_hidden_layers=L, num_attention_heads=NH,
                    num_key_value_heads=KVH, head_dim=HD, vocab_size=V, sliding_window=None,
                    tie_word_embeddings=False),
    "olmoe": dict(hidden_size=40, intermediate_size=48, num_hidden_layers=L, num_attention_heads=NH,
                  num_key_value_heads=NH, vocab_size=V, num_experts=8, num_experts_per_tok=6,
                  tie_word_embeddings=False),
    "gpt2": dict(n_embd=36, n_layer=L, n_head=NH, vocab_size=V, n_positions=64, tie_word_embeddings=True, bos_token_id=V - 1, eos_token_id=V - 1),
    "bert": dict(hidden_size=36, intermediate_size=INTER, num_hidden_layers=L, num_attention_heads=NH,
                 vocab_size=V, max_position_embeddings=64),
}
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


class Rec(TorchDispatchMode):
    def __init__(self, out):
        super().__init__()
        self.live = {}   # data_ptr -> (id, weakref)
        self.n = 0
        self.out = out
        self.mod = ["-"]
        self.external = set()

    def poll(self):
        dead = [p for p, (i, w) in self.live.items() if w.expired()]
        for p in dead:
            i, _ = self.live.pop(p)
            self.out.append(("-", i))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.poll()
        r = func(*args, **(kwargs or {}))
        outs, _ = tree_flatten(r)
        for t in outs:
            if not isinstance(t, torch.Tensor):
                continue
            st = t.untyped_storage()
            p = st.data_ptr()
            if p == 0 or st.nbytes() == 0 or p in self.live or p in self.external:
                continue
            self.n += 1
            self.live[p] = (self.n, StorageWeakRef(st))
            self.out.append(("+", self.n, st.nbytes(), str(t.dtype).replace("torch.", ""), tuple(t.shape),
                             str(func.overloadpacket.__name__), self.mod[-1]))
        return r


def main():
    arch, attn, new = sys.argv[1], sys.argv[2], int(sys.argv[3])
    dt = getattr(torch, DTYPES[sys.argv[4] if len(sys.argv) > 4 else "bf16"])
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM
    mt = arch
    cfg = AutoConfig.for_model(mt, **CFGS[arch])
    auto = AutoModelForMaskedLM if mt == "bert" else AutoModelForCausalLM
    torch.manual_seed(0)
    model = auto.from_config(cfg, dtype=dt, attn_implementation=attn).eval()
    events = []
    rec = Rec(events)
    for name, m in model.named_modules():
        m.register_forward_pre_hook(lambda mod, a, name=name: rec.mod.append(name or "model") and None)
        m.register_forward_hook(lambda mod, a, o: rec.mod.pop() and None)
    x = torch.randint(1, V, (B, S))
    am = torch.ones_like(x)
    keep = [x, am]
    for t in list(model.parameters()) + list(model.buffers()) + keep:
        rec.external.add(t.untyped_storage().data_ptr())
    with torch.no_grad():
        with rec:
            if new:
                out = model.generate(x, attention_mask=am, max_new_tokens=new, min_new_tokens=new,
                                     do_sample=False, pad_token_id=0)
            else:
                out = model(input_ids=x, use_cache=False)
            rec.poll()
        del out
    rec.poll()
    for e in events:
        print(" ".join(str(v).replace(" ", "") for v in e))


if __name__ == "__main__":
    main()
