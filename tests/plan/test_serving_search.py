"""The serving searches (pycore/plan/serving.py) offer a configuration as fitting only where the answer
for that configuration says "fits": the same band-based verdict, not the point estimate."""

from pycore.api import estimate_dict

GiB = 2 ** 30
# Llama-3.2-1B on llama.cpp, Q8_0, -c 8192, flash attention, every layer on the GPU
BASE = {"engine": "llamacpp", "quant": "Q8_0", "n_ctx": 8192, "flash_attn": "on"}


def serve(memory_bytes: int, solve: bool = False, **workload) -> dict:
    resp = estimate_dict({"model": "llama-3.2-1b", "gpu": {"memory_bytes": memory_bytes}, "solve": solve,
                          "workload": {"mode": "serve", **BASE, **workload}})
    assert resp["status"] == "ok", resp
    return resp["result"]


def parts(res: dict) -> dict:
    return {c["name"]: c["bytes"] for c in res["breakdown"]["children"]}


def test_a_card_between_the_estimate_and_the_bands_upper_edge_is_not_offered_as_fitting():
    roomy = serve(80 * GiB)
    p = parts(roomy)
    # the KV cache by hand: 16 layers x 8,192 cells x (K + V) 8 heads x 64 x 2 bytes (f16) = 268,435,456
    assert p["KV cache"] == 2 * 16 * 8192 * 8 * 64 * 2 == 268_435_456
    total = roomy["device_total_bytes"]
    assert total == sum(p.values())
    # The band (accuracy/bands.py serving_band): the compute buffer's share of the total times the ±4.0% of
    # the 19 logged compute buffers (error_bands.json references, p90 4.0), at least 0.5%:
    # 266,862,592 / 2,327,748,608 = 11.46% -> 4.0 x 0.1146 = 0.46% -> 0.5%
    assert p["compute buffer"] / total * 4.0 < 0.5 and roomy["error_band"]["pct"] == 0.5
    # A card 0.25% above the estimate: the estimate fits, the band's upper edge (total x 1.005) does not.
    card = total + total // 400
    assert total <= card < total * 1.005
    tight = serve(card, solve=True)
    assert tight["device_total_bytes"] == total and tight["verdict"] == "at risk" and not tight["fits"]
    # the search must not offer Q8_0 with every layer (16 blocks + the output layer = -ngl 17) on this card
    q8 = next(c for c in tight["solutions"]["gguf"] if c["quant"] == "Q8_0")
    assert not q8["all_layers"] and q8["n_gpu_layers"] < 17
    # what it does offer, its own answer calls "fits"; one layer more would not
    assert serve(card, n_gpu_layers=q8["n_gpu_layers"])["verdict"] == "fits"
    assert serve(card, n_gpu_layers=q8["n_gpu_layers"] + 1)["verdict"] != "fits"
    # and the smallest catalog GPU it names is one on which the answer says "fits"
    small = tight["solutions"]["smallest_gpu"]
    resp = estimate_dict({"model": "llama-3.2-1b", "gpu": small["gpu"], "workload": {"mode": "serve", **BASE}})
    assert resp["result"]["verdict"] == "fits"


def test_on_a_card_past_the_upper_edge_every_layer_is_offered():
    total = serve(80 * GiB)["device_total_bytes"]
    # 1% above the estimate clears the 0.5% band's upper edge (total x 1.005)
    roomy = serve(total + total // 100, solve=True)
    assert roomy["verdict"] == "fits"
    q8 = next(c for c in roomy["solutions"]["gguf"] if c["quant"] == "Q8_0")
    assert q8["all_layers"] and q8["n_gpu_layers"] == 17


def test_vllm_suggestions_are_answers_that_fit():
    # vLLM sizes its pool to the budget, so its answer's verdict is the estimate's; the searches' GPU and
    # GPU count are configurations whose own answers say "fits"
    resp = estimate_dict({"model": "llama-3.1-8b", "gpu": "l4-24gb", "solve": True,
                          "workload": {"mode": "serve", "engine": "vllm", "version": "0.19.0", "max_model_len": 8192,
                                       "target_requests": 4}})
    sol = resp["result"]["solutions"]
    few = sol["fewest_gpus"]
    again = estimate_dict({"model": "llama-3.1-8b", "gpu": "l4-24gb",
                           "workload": {"mode": "serve", "engine": "vllm", "version": "0.19.0", "max_model_len": 8192,
                                        "tensor_parallel_size": few["tensor_parallel_size"],
                                        "pipeline_parallel_size": few["pipeline_parallel_size"]}})
    assert again["result"]["verdict"] == "fits"


def test_the_device_map_search_judges_each_count_by_the_answers_band():
    # transformers' generate with device_map (pycore/serving/hf_devices.fewest_gpus): Llama-3.1-8B, one prompt
    # of 64 + 64 tokens, on 16 GiB cards (17,179,869,184 B). The most loaded card of each count, from the
    # device_map answers: 2 cards 9,779,274,469 B, 3 cards 6,723,322,793 B.
    from pycore.estimate import estimate
    from pycore.request.parse import parse_request
    from pycore.serving.hf import generate_request
    from pycore.serving.hf_devices import fewest_gpus
    work = {"mode": "serve", "engine": "hf", "num_prompts": 1, "prompt_len": 64, "max_new_tokens": 64}
    request = {"model": "llama-3.1-8b", "gpu": {"memory_bytes": 16 * GiB}, "workload": work}
    for n, peak in ((2, 9_779_274_469), (3, 6_723_322_793)):
        r = estimate_dict({**request, "workload": {**work, "devices": n}})["result"]
        assert r["device_total_bytes"] == peak and r["host_bytes"] == 0
    req = parse_request(request)
    sized = generate_request(req)
    e = estimate(sized.model, sized.workload, sized.precision, sized.hardware, sized.framework, sized.parallelism)
    # no band: two cards fit. A band of ±80%: 9,779,274,469 x 1.8 = 17,602,694,044 > 16 GiB, so two cards would
    # be "at risk"; 6,723,322,793 x 1.8 = 12,101,981,027 fits, so three
    assert fewest_gpus(req, e, {"pct": 0.0})["gpus"] == 2
    assert fewest_gpus(req, e, {"pct": 80.0})["gpus"] == 3
