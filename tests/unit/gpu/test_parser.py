"""The DCGM parser on the shared fixtures and on the variants real exporters print."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runyard_operator.gpu.parser import GPUSample, parse_exposition, parse_prometheus_result

FIXTURES = Path(__file__).parent / "fixtures"
GPU0 = "GPU-5f1c3a2e-0b7d-4c1e-9a8f-2d6e4b7c9a01"
GPU1 = "GPU-8a2d4f6b-1c3e-4a5b-8d7f-0e9c1b2a3d45"
LABELS = 'gpu="0",UUID="GPU-aaaa",pci_bus_id="00000000:19:00.0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3"'


def by_uuid(samples: list[GPUSample]) -> dict[str, GPUSample]:
    return {s.key: s for s in samples}


@pytest.mark.parametrize("name", ["dcgm_exporter_4.8.2_h100_k8s.prom", "dcgm_exporter_main_h100_k8s.prom"])
def test_fixture_both_hostname_spellings(name: str) -> None:
    samples = by_uuid(parse_exposition((FIXTURES / name).read_text(), now=100.0))
    assert set(samples) == {GPU0, GPU1}
    busy, idle = samples[GPU0], samples[GPU1]
    assert (busy.node, busy.index, busy.time) == ("gpu-node-07", "0", 100.0)
    assert (busy.namespace, busy.pod, busy.container) == ("ml-team", "llama-ft-worker-0", "pytorch")
    assert busy.utilization == 98
    assert busy.memory_used_bytes == 61234 * 1048576  # MiB -> bytes
    assert busy.power_watts == pytest.approx(612.483)
    # prometheus_client renames counter samples to *_total; the parser undoes it.
    assert busy.energy_mj == 183456789012
    assert not idle.has_owner and idle.pod == "" and idle.utilization == 0


def test_scrape_node_overrides_hostname_label() -> None:
    text = (FIXTURES / "dcgm_exporter_4.8.2_h100_k8s.prom").read_text()
    assert {s.node for s in parse_exposition(text, 1.0, node="kwok-gpu-3")} == {"kwok-gpu-3"}


def test_no_driver_label_sentinels_and_clamping() -> None:
    text = "\n".join(
        [
            "# TYPE DCGM_FI_DEV_GPU_UTIL gauge",
            f'DCGM_FI_DEV_GPU_UTIL{{{LABELS},hostname="n1"}} 140',
            "# TYPE DCGM_FI_DEV_POWER_USAGE gauge",
            f'DCGM_FI_DEV_POWER_USAGE{{{LABELS},hostname="n1"}} 9223372036854775794',
            "# TYPE DCGM_FI_DEV_FB_USED gauge",
            f'DCGM_FI_DEV_FB_USED{{{LABELS},hostname="n1"}} 1024',
            "# TYPE DCGM_FI_DEV_MEMORY_TEMP gauge",
            f'DCGM_FI_DEV_MEMORY_TEMP{{{LABELS},hostname="n1"}} 9223372036854775794',
            "",
        ]
    )
    (s,) = parse_exposition(text, 5.0)
    assert s.node == "n1"
    assert s.utilization == 100.0  # "abnormal points" above 100 are clamped
    assert s.power_watts is None  # the int64 sentinel means "not supported"
    assert s.memory_used_bytes == 1024 * 1048576


def test_mig_instances_use_gr_engine_active_and_keep_parent_energy() -> None:
    mig = 'gpu="0",UUID="GPU-58e8",pci_bus_id="0:1A",device="nvidia0",modelName="H100",GPU_I_PROFILE="1g.10gb"'
    text = "\n".join(
        [
            "# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge",
            f'DCGM_FI_PROF_GR_ENGINE_ACTIVE{{{mig},GPU_I_ID="7",Hostname="h",container="c",namespace="ns",pod="p"}} 0.5',
            f'DCGM_FI_PROF_GR_ENGINE_ACTIVE{{{mig},GPU_I_ID="8",Hostname="h"}} 0.000000',
            "# TYPE DCGM_FI_DEV_GPU_UTIL gauge",
            f'DCGM_FI_DEV_GPU_UTIL{{{mig},GPU_I_ID="7",Hostname="h",container="c",namespace="ns",pod="p"}} 0',
            "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter",
            f'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{mig},GPU_I_ID="7",Hostname="h",container="c",namespace="ns",pod="p"}} 126272101025',
            f'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{{{mig},GPU_I_ID="8",Hostname="h"}} 126272101025',
            "",
        ]
    )
    samples = by_uuid(parse_exposition(text, 1.0))
    assert set(samples) == {"GPU-58e8/gi7", "GPU-58e8/gi8"}
    owned = samples["GPU-58e8/gi7"]
    assert owned.uuid == "GPU-58e8" and owned.mig_profile == "1g.10gb" and owned.pod == "p"
    assert owned.utilization == 50.0  # GPU_UTIL is 0 on MIG; GR_ENGINE_ACTIVE (ratio) wins
    assert samples["GPU-58e8/gi8"].energy_mj == owned.energy_mj == 126272101025


def test_old_names_and_labels() -> None:
    # `-o`: uuid/pod_name/pod_namespace; 1.x-compatibility metric names; 2.x printed empty pod labels.
    text = "\n".join(
        [
            "# TYPE dcgm_gpu_utilization gauge",
            'dcgm_gpu_utilization{gpu="1",uuid="GPU-b",pod_name="w-0",pod_namespace="ns",container_name="c"} 77',
            'dcgm_gpu_utilization{gpu="2",uuid="GPU-c",container="",namespace="",pod=""} 3',
            "# TYPE dcgm_total_energy_consumption counter",
            'dcgm_total_energy_consumption{gpu="1",uuid="GPU-b",pod_name="w-0",pod_namespace="ns",container_name="c"} 42',
            "",
        ]
    )
    samples = by_uuid(parse_exposition(text, 1.0))
    assert (samples["GPU-b"].namespace, samples["GPU-b"].pod, samples["GPU-b"].utilization) == ("ns", "w-0", 77)
    assert samples["GPU-b"].energy_mj == 42
    assert not samples["GPU-c"].has_owner


def test_pod_uid_label() -> None:
    text = (
        f'# TYPE DCGM_FI_DEV_GPU_UTIL gauge\nDCGM_FI_DEV_GPU_UTIL{{{LABELS},namespace="a",pod="b",pod_uid="u-1"}} 5\n'
    )
    (s,) = parse_exposition(text, 1.0)
    assert s.pod_uid == "u-1"


def test_a_broken_line_does_not_lose_the_page() -> None:
    text = f'# TYPE DCGM_FI_DEV_GPU_UTIL gauge\nDCGM_FI_DEV_GPU_UTIL{{{LABELS}}} 12\nDCGM_FI_DEV_FB_USED{{gpu="0" garbage\n'
    (s,) = parse_exposition(text, 1.0)
    assert s.utilization == 12


def test_prometheus_matrix_with_exported_renames() -> None:
    body = json.loads((FIXTURES / "prometheus_query_range_gpu_util.json").read_text())
    samples = parse_prometheus_result(body, honor_labels=False)
    assert [s.time for s in samples] == [1767225600, 1767225615, 1767225630, 1767225645]
    assert [s.utilization for s in samples] == [97, 98, 0, 99]
    first = samples[0]
    # exported_* are the exporter's pod labels; plain pod/namespace were the exporter pod's own target labels.
    assert (first.namespace, first.pod, first.container) == ("ml-team", "llama-ft-worker-0", "pytorch")
    assert first.node == "gpu-node-07"


def test_prometheus_without_exported_labels_ignores_target_pod() -> None:
    body = {
        "data": {
            "result": [
                {
                    "metric": {
                        "__name__": "DCGM_FI_DEV_GPU_UTIL",
                        "UUID": "GPU-x",
                        "gpu": "0",
                        "pod": "dcgm-exporter-1",
                    },
                    "value": [10, "4"],
                }
            ]
        }
    }
    (s,) = parse_prometheus_result(body, honor_labels=False)
    assert not s.has_owner
    (s,) = parse_prometheus_result(body, honor_labels=True)
    assert s.pod == "dcgm-exporter-1"
