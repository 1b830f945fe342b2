"""What the command line prints for transformers' device_map: the map (layer ranges per device), each
GPU's peak, the host's share, and the fewest GPUs when searched."""

from __future__ import annotations

from ..units import GiB


def _ranges(ranges: list) -> str:
    if not ranges:
        return "no layers"
    return ", ".join(f"layer {a}" if a == b else f"layers {a}-{b}" for a, b in ranges)


def _budgets(budgets: dict) -> str:
    """ "0: 20.00 GiB, 1-7: 22.70 GiB each, cpu: ..." (runs of equal GPU budgets written once)."""
    runs: list = []
    for k, v in budgets.items():
        if runs and runs[-1][2] == v and k.isdigit() and runs[-1][1].isdigit() and int(k) == int(runs[-1][1]) + 1:
            runs[-1][1] = k
        else:
            runs.append([k, k, v])
    return ", ".join(f"{a}: {v / GiB:.2f} GiB" if a == b else f"{a}-{b}: {v / GiB:.2f} GiB each" for a, b, v in runs)


def render_device_map(res: dict, out) -> None:
    dm = res.get("device_map")
    if dm:
        budgets = _budgets(dm["balanced_max_memory"])
        out.write(f"\ndevice_map=\"{dm['strategy']}\" (transformers {dm['transformers']}); max_memory as placed: "
                  f"{budgets}\n")
        for entry in dm["map"]:
            mods = ", ".join(entry["modules"])
            what = (f"{_ranges(entry['layers'])} + {mods}" if entry["layers"] and mods
                    else mods if mods else _ranges(entry["layers"]))
            out.write(f"  {str(entry['device']):>4}: {what}  "
                      f"({entry['bytes'] / GiB:.2f} GiB of weights)\n")
        out.write("\nper GPU during generate:\n")
        for d in res["per_device"]:
            mark = "  <- most loaded" if d["device"] == res["most_loaded_device"] else ""
            out.write(f"  GPU {d['device']}: {_ranges(d['layers'])}; weights {d['weights_bytes'] / GiB:.2f} GiB, "
                      f"KV cache {d['kv_cache_bytes'] / GiB:.2f} GiB, peak {d['peak_bytes'] / GiB:.2f} GiB "
                      f"(at {d['peak_phase']}){mark}\n")
        out.write(f"host memory for offloaded weights: {res['host_bytes'] / GiB:.2f} GiB"
                  + (f"; on disk: {res['disk_bytes'] / GiB:.2f} GiB" if res.get("disk_bytes") else "") + "\n")
        if res.get("refusal"):
            out.write(f"from_pretrained refuses this map: {res['refusal']}\n")
        out.write(f"verdict (most loaded GPU): {res['verdict']}\n")
    sol = res.get("solutions")
    if sol is not None:
        few = sol.get("fewest_gpus")
        if few:
            split = _budgets(few["max_memory"])
            out.write(f"\nfewest GPUs of this kind with device_map and no offload: {few['gpus']} "
                      f"(max_memory from_pretrained computes: {split})\n")
        else:
            out.write("\nno count of these GPUs up to 64 holds the model without offload\n")
