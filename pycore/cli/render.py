"""What the command line prints: the breakdown tree, the verdict, the layout and the plan table."""

from __future__ import annotations

import sys

from ..units import GB, GiB
from .args import printable


class Printable:
    """A stream that escapes what it writes (see ``printable``)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(printable(text))


def _gib(n: int) -> str:
    return f"{n / GiB:8.2f} GiB"


def _tree(node: dict, depth: int, out) -> None:
    out.write(f"{'  ' * depth}{node['name']:<{52 - 2 * depth}} {_gib(node['bytes'])}\n")
    if depth < 2:
        for child in node.get("children", []):
            _tree(child, depth + 1, out)


def render(res: dict, out=None) -> None:
    out = Printable(out or sys.stdout)
    m, g = res["model"], res["gpu"]
    out.write(f"{m['name']} ({res['params']['total'] / 1e9:.3f} B parameters) on {g['name']} "
              f"({g['memory_bytes'] / GiB:.1f} GiB)\n")
    layout = res.get("layout")
    if layout and layout.get("gpus", 1) > 1:
        d = layout["degrees"]
        out.write(f"layout: {layout['recipe']}, {layout['gpus']} GPUs = dp {d['data']} x tp {d['tensor']} x "
                  f"pp {d['pipeline']} x cp {d['context']} x ep {d['expert']}, ZeRO {layout['zero_stage']}; "
                  f"per GPU: {layout['most_loaded']['description']}\n")
    out.write("\n")
    _tree(res["breakdown"], 0, out)
    verdict = res.get("verdict", "fits" if res["fits"] else "does not fit").upper()
    head = res["headroom_bytes"]
    out.write(f"\npeak allocated (torch.cuda.max_memory_allocated): {_gib(res['peak_allocated_bytes'])}"
              f"  at {res['peak_phase']}: {res['peak_moment']}\n")
    out.write(f"device total (nvidia-smi):                        {_gib(res['device_total_bytes'])}"
              f"  = {res['device_total_bytes'] / GB:.1f} GB\n")
    out.write(f"model states (weights, gradients, optimizer):     {_gib(res['model_states_bytes'])}\n")
    if res.get("host_bytes"):
        out.write(f"host memory per node (offload):                   {_gib(res['host_bytes'])}\n")
    out.write(f"{verdict}: {'headroom' if head >= 0 else 'short by'} {abs(head) / GiB:.2f} GiB\n")
    band = (res.get("bands") or {}).get("device_total")
    if band and band["low_bytes"] != band["high_bytes"]:
        out.write(f"device total band: {band['low_bytes'] / GiB:.2f} to {band['high_bytes'] / GiB:.2f} GiB "
                  f"({band['status']})\n")
    if res.get("not_estimated"):
        out.write(f"not estimated by this recipe: {', '.join(res['not_estimated'])}\n")
    for w in res["warnings"]:
        out.write(f"warning: {w}\n")
    if "max_batch_size" in res:
        out.write(f"largest batch that fits: {res['max_batch_size']}; largest sequence: {res['max_seq_len']}\n")
        for a, b in res.get("max_seq_len_gaps", []):
            out.write(f"  (sequences of {a}-{b} tokens do not fit, although longer ones do)\n")
        for s in res["suggestions"][:6]:
            out.write(f"  - {s['change']}: {s['device_total_bytes'] / GiB:.2f} GiB"
                      f"{' (fits)' if s['fits'] else ''}\n")
    if "max_parameters" in res:
        out.write(f"largest model that fits: {res['max_parameters'] / 1e9:.2f} B parameters\n")


def render_plan(res: dict, out=None) -> None:
    out = Printable(out or sys.stdout)
    plan = res["plan"]
    g = res["gpu"]
    out.write(f"{res['model']['name']} on {g['name']} ({g['memory_bytes'] / GiB:.1f} GiB), recipe "
              f"{res.get('layout', {}).get('recipe', '')}\n")
    if plan.get("gpus") is None:
        out.write(plan.get("message", "no layout fits") + "\n")
        return
    rec = plan["recommended"]
    if rec:
        d = rec["degrees"]
        if plan["question"] == "fewest":
            out.write(f"fewest GPUs: {plan['gpus']}\n")
        out.write(f"recommended: dp {d['data']} x tp {d['tensor']} x pp {d['pipeline']} x cp {d['context']} x "
                  f"ep {d['expert']}, ZeRO {rec['zero_stage']}, recompute {rec['recompute']}, micro-batch "
                  f"{rec['micro_batch']} x {rec['gradient_accumulation']} accumulation: "
                  f"{rec['device_total_bytes'] / GiB:.2f} GiB per GPU\n")
    else:
        out.write(f"no layout of {plan['gpus']} GPUs fits\n")
    out.write(f"\n{plan['count']} valid layouts of {plan['gpus']} GPUs (showing {len(plan['layouts'])}):\n")
    out.write(f"{'dp':>5} {'tp':>3} {'pp':>3} {'cp':>3} {'ep':>4} {'ZeRO':>4} {'recompute':>9} {'mb x acc':>9} "
              f"{'per GPU GiB':>12} {'headroom':>9} {'bubble':>7} {'step':>6}  fits\n")
    for r in plan["layouts"]:
        d = r["degrees"]
        t = r["throughput"]
        out.write(f"{d['data']:>5} {d['tensor']:>3} {d['pipeline']:>3} {d['context']:>3} {d['expert']:>4} "
                  f"{r['zero_stage']:>4} {r['recompute']:>9} {str(r['micro_batch']) + 'x' + str(r['gradient_accumulation']):>9} "
                  f"{r['device_total_bytes'] / GiB:>12.2f} {r['headroom_bytes'] / GiB:>9.2f} "
                  f"{t['bubble_fraction']:>7.3f} {t['relative_step_time']:>6.2f}  {'yes' if r['fits'] else 'no'}"
                  f"{'  TP/CP across nodes' if t['tp_crosses_node'] else ''}"
                  f"{'  device_map: GPUs in turn' if r.get('pipeline_schedule', '').startswith('device_map') else ''}"
                  f"{'  tight' if r.get('tight') else ''}\n")
    if rec and rec.get("launch"):
        out.write(f"\nlaunch the recommended layout ({rec['launch']['framework']}):\n{rec['launch']['text']}\n")


def render_serve(res: dict, out=None) -> None:
    """A serving answer: the engine's figures as its log prints them, then the GPU's parts."""
    out = Printable(out or sys.stdout)
    if res.get("engine") == "hf":
        render(res, out.stream)
        if "per_device" in res or "solutions" in res:
            from .render_devices import render_device_map
            render_device_map(res, out)
        return
    m, g = res["model"], res["gpu"]
    out.write(f"{m['name']} on {res['gpus']} x {g['name']} ({g['memory_bytes'] / GiB:.2f} GiB), "
              f"{res['engine']} {res['version']}\n\n")
    _tree(res["breakdown"], 0, out)
    rep = res["report"]
    out.write("\n")
    if res["engine"] == "llamacpp":
        out.write(f"file size = {rep['file size']}; n_ctx = {rep['n_ctx']} ({rep['streams']} stream(s) of "
                  f"{rep['cells_per_stream']} cells); KV {rep['kv_size_mib']:.2f} MiB; {rep['offloaded']}\n")
        out.write(f"model buffers (MiB): {rep['model_buffer_mib']}; compute buffers (MiB): "
                  f"{rep['compute_buffer_mib']}\n")
        out.write(f"host memory: {res['host']['bytes'] / GiB:.2f} GiB\n")
    else:
        for key in ("Model loading took", "Available KV cache memory", "GPU KV cache size", "mem_fraction_static",
                    "max_total_num_tokens", "max_running_requests"):
            if key in rep:
                out.write(f"{key}: {rep[key]}\n")
        for key, value in rep.items():
            if key.startswith("Maximum concurrency"):
                out.write(f"{key}: {value}\n")
    kv = (f"KV cache: {res['kv_cache_tokens']:,} tokens;" if res["kv_cache_bytes"] else
          "KV cache: none (the model keeps no KV cache);")
    requests = f"{res['max_concurrency']:,.2f}".rstrip("0").rstrip(".")
    out.write(f"{kv} {requests} requests of {res['context_len']:,} tokens; "
              f"longest context {res['max_context_len']:,}\n")
    if res["refusal"]:
        out.write(f"the engine refuses to start: {res['refusal']}\n")
    verdict = res.get("verdict", "fits" if res["fits"] else "does not fit").upper()
    head = res["headroom_bytes"]
    out.write(f"{verdict}: {'headroom' if head >= 0 else 'short by'} {abs(head) / GiB:.2f} GiB\n")
    for w in res["warnings"]:
        out.write(f"warning: {w}\n")
    sol = res.get("solutions")
    if sol:
        out.write(f"\nlongest context for {sol['target_requests']} request(s): {sol['longest_context_for_requests']:,}"
                  f"; most requests of {sol['context_len']:,} tokens: {sol['most_requests_at_context']:,}\n")
        if sol.get("safety"):
            out.write(f"({sol['safety']})\n")
        if sol.get("smallest_gpu"):
            out.write(f"smallest catalog GPU: {sol['smallest_gpu']['name']}\n")
        if sol.get("fewest_gpus"):
            out.write(f"fewest GPUs of this kind: {sol['fewest_gpus']['gpus']}\n")
        for c in sol.get("gguf", []):
            out.write(f"  {c['quant']:8s} {c['file_bytes'] / GiB:7.2f} GiB {c['bits_per_weight']:6.3f} bpw  "
                      f"-ngl {c['n_gpu_layers']}{' (all layers)' if c['all_layers'] else ''}\n")


def render_check(res: dict, out=None) -> None:
    """The measured run beside the estimate, row by row, and what would explain a gap."""
    out = Printable(out or sys.stdout)
    ck = res["check"]
    out.write(f"{res['model']['name']} on {res['gpu']['name']}: read {', '.join(ck['formats'])}\n\n")
    out.write(f"{'':58s} {'measured':>12s} {'estimated':>12s} {'gap':>8s}\n")
    for r in ck["rows"]:
        bound = " (lower bound)" if r["measured_is_lower_bound"] else ""
        out.write(f"{r['quantity'][:58]:58s} {_gib(r['measured_bytes'])} {_gib(r['estimated_bytes'])} "
                  f"{100 * (r['gap_fraction'] or 0):+7.1f}%{bound}\n")
    agreement = ck.get("agreement") or f"within ±{100 * ck['tolerance_fraction']:.0f}% counts as agreement"
    out.write(f"\n{ck['verdict']} ({agreement})\n")
    for e in ck["explanations"]:
        out.write(f"  - {e['assumption']}: {e['text']}\n")
    for n in ck["notes"]:
        out.write(f"note: {n}\n")
    out.write("calibration record: " + ("--record FILE writes it" if ck["record"] else ck["record_note"]) + "\n")


def render_fit(res: dict, out=None) -> None:
    """The cheapest plans that fit, each change with its stated cost."""
    out = Printable(out or sys.stdout)
    fit = res["fit"]
    out.write(f"{res['model']['name']} on {res['gpu']['name']} ({res['gpu']['memory_bytes'] / GiB:.1f} GiB): "
              f"{res['device_total_bytes'] / GiB:.2f} GiB as given\n")
    if not fit["plans"]:
        out.write(fit["message"] + "\n")
        return
    for n, plan in enumerate(fit["plans"], 1):
        host = f"; {plan['host_bytes'] / GiB:.2f} GiB of host memory" if plan.get("host_bytes") else ""
        out.write(f"\n{n}. {plan['device_total_bytes'] / GiB:.2f} GiB, {plan.get('verdict', 'fits')} "
                  f"(headroom {plan['headroom_bytes'] / GiB:.2f} GiB){host}\n")
        for c in plan["changes"]:
            out.write(f"   - {c['change']}: {c['cost']}\n")
    out.write(f"\n({fit['evaluated']} combinations estimated over: {', '.join(fit['levers'])})\n")
