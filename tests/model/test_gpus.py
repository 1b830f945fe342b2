"""The GPU catalog (issue 12): the cards people buy and rent now, with memory as the driver reports it
where a log shows it, else the data sheet's figure; each number checked by hand against its source."""

from pycore.data.catalog import gpu_entries

GiB = 2 ** 30


def test_memory_matches_its_stated_source():
    g = {k: v["memory_bytes"] for k, v in gpu_entries().items()}
    # driver totals printed by vLLM logs to 0.01 GiB (tests/data/golden_serving.json)
    for gpu, printed in (("l40s-48gb", 44.42), ("h200-141gb", 139.81), ("a100-40gb", 39.49), ("rtx-3090-24gb", 23.58)):
        assert abs(g[gpu] / GiB - printed) <= 0.005, gpu
    assert g["h100-sxm-80gb"] == 85017493504                  # shared/calibration env.gpu_total_bytes
    assert g["b300-288gb"] == 288_000_000_000
    assert g["gb200-186gb"] == 13_400_000_000_000 // 72 // 10 ** 9 * 10 ** 9     # 13.4 TB over 72 GPUs
    assert g["mi355x-288gb"] == 8 * 36 * GiB
    assert g["rtx-pro-6000-96gb"] == 96 * GiB - GiB // 2
    assert g["rtx-5080-16gb"] == g["rtx-5070ti-16gb"] == 16 * GiB - GiB // 2
    assert g["gb10-128gb"] == 128_000_000_000


def test_every_entry_names_its_source_and_vendor():
    for gid, e in gpu_entries().items():
        assert e["memory_source"] and e["vendor"] and e["name"] and e["kind"], gid
        assert isinstance(e["memory_bytes"], int) and e["memory_bytes"] > 2 * GiB, gid
