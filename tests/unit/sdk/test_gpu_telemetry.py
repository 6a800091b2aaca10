"""GPU telemetry of local runs: the visible GPUs read through the node agent's NVML reader (a fake pynvml here: no GPU
on this machine), logged into a real MLflow run as system metrics, summarised, and drawn in the run's PNG; without NVML
nothing is logged and nothing fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runyard.gpu.telemetry import GPUTelemetry, system_metric_keys, visible_gpus
from runyard.plot import plot_metrics
from runyard.tracking import mlflow_ops
from runyard.tracking.local import start_local_tracking
from tests.unit.gpu.fake_nvml import FakeGPU, FakeNVML
from tests.unit.tracking.conftest import make_tracked_run

GPU0 = "GPU-5f1c3a2e-0b7d-4c1e-9a8f-2d6e4b7c9a01"
GPU1 = "GPU-8a2d4f6b-1c3e-4a5b-8d7f-0e9c1b2a3d45"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def two_gpus() -> FakeNVML:
    # GPU0 busy 75 % of its 200 ms samples, GPU1 idle; both draw 300 W (the energy counter moves 300 J a second).
    return FakeNVML(
        [
            FakeGPU(GPU0, util=90, used=30 * 2**30, samples=[(200_000 * k, 100 if k % 4 else 0) for k in range(1, 51)]),
            FakeGPU(GPU1, util=0, used=2**30, samples=[(200_000 * k, 0) for k in range(1, 51)]),
        ]
    )


def test_samples_are_integrated_logged_and_summarised() -> None:
    nvml, clock, logged = two_gpus(), Clock(), []
    telemetry = GPUTelemetry.start(
        node="ws-1", cuda_visible_devices=None, log=lambda step, m: logged.append((step, dict(m))), nvml=nvml,
        clock=clock, interval=3600,
    )  # fmt: skip
    assert telemetry is not None
    for _ in range(10):  # one pass a second for 10 s
        clock.now += 1.0
        for gpu in nvml.gpus:
            gpu.energy_mj += 300_000
        telemetry.sample()
    summary = telemetry.stop()
    assert summary.gpus == 2 and summary.gpu_hours == pytest.approx(2 * 10 / 3600)
    # The whole buffer (10 s of samples) is integrated once: GPU0 busy 3 of 4 samples, GPU1 never.
    assert summary.avg_utilization == pytest.approx((75.0 + 0.0) / 2, abs=1.0)
    assert summary.idle_gpu_hours == pytest.approx((0.25 + 1.0) * 10 / 3600, rel=0.05)
    assert summary.energy_kwh == pytest.approx(2 * 10 * 300 / 3.6e6)
    assert summary.avg_power_watts == pytest.approx(300.0)
    assert summary.peak_memory_bytes == 30 * 2**30
    # The first pass (at the start), one per second, and the last one at stop: MLflow system-metric names.
    assert [step for step, _ in logged] == [*range(11), 10]
    assert logged[1][1] == system_metric_keys("ws-1", "0", 90, 30 * 2**30, 300.0) | system_metric_keys(
        "ws-1", "1", 0, 2**30, 300.0
    )
    assert set(summary.metrics()) == {
        "gpu_hours", "gpu_idle_hours", "gpu_energy_kwh", "gpu_util_avg_pct", "gpu_mem_peak_bytes",
        "gpu_power_avg_watts",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), ("", set()), ("-1", set()), ("1, GPU-x", {"1", "GPU-x"})]
)
def test_visible_gpus(value: str | None, expected: set[str] | None) -> None:
    assert visible_gpus(value) == expected


def test_only_the_gpus_the_replicas_see_are_read() -> None:
    logged: list[Any] = []
    telemetry = GPUTelemetry.start(
        node="ws", cuda_visible_devices=GPU1, log=lambda s, m: logged.append(m), nvml=two_gpus(), interval=3600
    )
    assert telemetry is not None and telemetry.stop().gpus == 1
    assert all("gpu_1_" in key for metrics in logged for key in metrics)


def test_no_nvml_or_no_visible_gpu_means_no_telemetry_and_no_error() -> None:
    assert GPUTelemetry.start(node="ws", cuda_visible_devices=None, log=None, nvml=FakeNVML([], missing=True)) is None
    assert GPUTelemetry.start(node="ws", cuda_visible_devices="-1", log=None, nvml=two_gpus()) is None
    assert GPUTelemetry.start(node="ws", cuda_visible_devices=None, log=None, nvml=FakeNVML([])) is None
    # This machine has no NVIDIA driver: the real nvidia-ml-py (or its absence) gives no telemetry either.
    assert GPUTelemetry.start(node="ws", cuda_visible_devices=None, log=None) is None


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::FutureWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_telemetry_lands_in_the_tracked_run_and_in_its_png(tmp_path: Path) -> None:
    lt = start_local_tracking(make_tracked_run(), state_dir=tmp_path / ".runyard")
    assert lt.run_id and lt.tracking_uri
    lt.log_metrics(0, {"loss": 1.0})
    lt.log_metrics(1, {"loss": 0.5})
    nvml, clock = two_gpus(), Clock()
    telemetry = GPUTelemetry.start(
        node="ws-1", cuda_visible_devices=None, log=lt.log_metrics, nvml=nvml, clock=clock, interval=3600
    )
    assert telemetry is not None
    for _ in range(3):
        clock.now += 1.0
        telemetry.sample()
    lt.log_metrics(0, telemetry.stop().metrics())
    lt.finish("FINISHED")
    client = mlflow_ops.client_for(lt.tracking_uri)
    history = client.get_metric_history(lt.run_id, "system/ws-1/gpu_0_utilization_percentage")
    assert sorted(m.step for m in history) == [0, 1, 2, 3, 3]
    assert client.get_run(lt.run_id).data.metrics["gpu_util_avg_pct"] >= 0
    png = plot_metrics(lt.tracking_uri, lt.run_id, tmp_path / "metrics.png", metrics=["loss"])
    assert png.stat().st_size > 0
    from PIL import Image

    # Two panels: the loss per step, and the GPUs' utilisation per second below it.
    assert Image.open(png).size[1] == 600
