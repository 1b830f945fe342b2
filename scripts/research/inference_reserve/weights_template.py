"""Symbolic list of the parameters (and buffers) in construction order, per arch, from the tiny model:
python weights_template.py ARCH DTYPE -> JSON [[itemsize, expr], ...] (appended to templates as 'weights')."""
import json, sys
import torch
from capture import CFGS, DTYPES
import symbolize as SY
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM
arch, dts = sys.argv[1], sys.argv[2]
cfg = AutoConfig.for_model(arch, **CFGS[arch])
auto = AutoModelForMaskedLM if arch == "bert" else AutoModelForCausalLM
with torch.device("meta"):
    m = auto.from_config(cfg, dtype=getattr(torch, DTYPES[dts]))
tab = SY.table(arch, 0, False)
tab[3] = "B"
if arch == "bert":
    tab[2] = "2"
out, seen = [], set()
for name, t in list(m.named_parameters()) + list(m.named_buffers()):
    key = id(t)
    if key in seen: continue
    seen.add(key)
    syms = []
    for v in t.shape:
        if v == 3 * SY.ARCH.get(arch, {}).get("HID", SY.BASE["HID"]): syms.append("3*HID")
        elif v in tab: syms.append(tab[v])
        else: raise SystemExit(f"{name} {tuple(t.shape)}: unknown {v}")
    out.append([t.element_size(), "*".join(syms) or "1", name])
print(json.dumps(out))
