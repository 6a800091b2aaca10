"""The node agent: NVML reader on a fake pynvml, PodResources over a real gRPC unix socket, DCGM-format page."""

from __future__ import annotations

import asyncio
import os
import tempfile
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from runyard.gpu.nvml import NVMLReader
from runyard.ports import free_port
from runyard_operator.gpu import podresources as pr
from runyard_operator.gpu.agent import Agent, render, serve
from runyard_operator.gpu.parser import parse_exposition
from tests.unit.gpu.fake_nvml import FakeGPU, FakeNVML, NVMLError_LibraryNotFound

FIXTURES = Path(__file__).parent / "fixtures"
GPU0 = "GPU-5f1c3a2e-0b7d-4c1e-9a8f-2d6e4b7c9a01"
GPU1 = "GPU-8a2d4f6b-1c3e-4a5b-8d7f-0e9c1b2a3d45"
MIG = "MIG-2ce7a541-c516-5dbc-a76e-26cc100d9b55"


def fake_gpus() -> FakeNVML:
    return FakeNVML(
        [
            FakeGPU(GPU0, util=97, used=60 * 2**30, energy_mj=5_000_000),
            FakeGPU(
                GPU1,
                energy_mj=7_000_000,
                mig=[
                    {"uuid": MIG, "profile": "1g.10gb", "gi": 7, "used": 2**30, "total": 10 * 2**30},
                    {"uuid": "MIG-other", "profile": "1g.10gb", "gi": 8, "used": 0, "total": 10 * 2**30},
                ],
            ),
        ]
    )


@pytest.fixture
def socket_path() -> Iterator[str]:
    # AF_UNIX paths are limited to ~107 bytes: pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="pr-") as tmp:
        yield os.path.join(tmp, "kubelet.sock")


def start_kubelet(socket_path: str, response: Any) -> Any:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    pr.add_lister(server, lambda request, context: response)
    server.add_insecure_port(f"unix://{socket_path}")
    server.start()
    return server


def fixture_response() -> Any:
    return pr.response_from_json((FIXTURES / "podresources_list_response.json").read_text())


def test_nvml_reader_whole_gpu_and_mig() -> None:
    readings = NVMLReader(fake_gpus(), clock=lambda: 5.0).read()
    assert [(r.uuid, r.gi_id) for r in readings] == [(GPU0, None), (GPU1, None), (GPU1, 7), (GPU1, 8)]
    whole, parent, mig7, _ = readings
    assert (whole.utilization_pct, whole.power_watts, whole.energy_mj) == (97.0, 300.0, 5_000_000)
    assert whole.bus_id == "00000000:00:00.0" and whole.name == "NVIDIA H100 80GB HBM3"
    assert parent.utilization_pct is None  # NotSupported on a MIG-enabled GPU becomes None
    assert (mig7.mig_uuid, mig7.mig_profile, mig7.memory_used_bytes) == (MIG, "1g.10gb", 2**30)
    assert mig7.energy_mj == parent.energy_mj  # the parent's counter, as DCGM repeats it


def test_nvml_library_missing_raises_on_open() -> None:
    with pytest.raises(NVMLError_LibraryNotFound):
        NVMLReader(FakeNVML([], missing=True)).read()


def test_podresources_owners_from_fixture() -> None:
    owners = pr.owners_from_response(fixture_response())
    assert set(owners) == {GPU0, GPU1, MIG}  # rdma and DRA entries are not NVIDIA device-plugin GPUs
    assert owners[GPU1].pod == "notebook-abc"  # "<uuid>::3" time-slicing replica stripped
    assert (owners[MIG].namespace, owners[MIG].resource) == ("ml-team", "nvidia.com/mig-1g.10gb")


def test_podresources_over_a_real_grpc_unix_socket_survives_socket_recreation(socket_path: str) -> None:
    server = start_kubelet(socket_path, fixture_response())
    client = pr.PodResourcesClient(socket_path, timeout=5)
    try:
        assert set(client.owners()) == {GPU0, GPU1, MIG}
        server.stop(None).wait()
        with pytest.raises(grpc.RpcError):
            client.owners()
        # The kubelet restarts and re-creates its socket: the next call reconnects.
        Path(socket_path).unlink(missing_ok=True)
        empty = pr.ListPodResourcesResponse()
        server = start_kubelet(socket_path, empty)
        assert client.owners() == {}
    finally:
        client.close()
        server.stop(None).wait()


def test_render_round_trips_through_the_operator_parser() -> None:
    readings = NVMLReader(fake_gpus(), clock=lambda: 5.0).read()
    owners = pr.owners_from_response(fixture_response())
    page = render(readings, owners, "gpu-node-07")
    assert 'hostname="gpu-node-07"' in page and "# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter" in page
    samples = {s.key: s for s in parse_exposition(page, 9.0, node="gpu-node-07")}
    assert set(samples) == {GPU0, GPU1, f"{GPU1}/gi7", f"{GPU1}/gi8"}
    busy = samples[GPU0]
    assert (busy.namespace, busy.pod, busy.container) == ("ml-team", "llama-ft-worker-0", "pytorch")
    assert (busy.utilization, busy.memory_used_bytes, busy.power_watts) == (97, 60 * 2**30, 300.0)
    assert busy.energy_mj == 5_000_000
    mig = samples[f"{GPU1}/gi7"]
    assert (mig.pod, mig.mig_profile, mig.memory_used_bytes) == ("eval-job-7x2kq", "1g.10gb", 2**30)
    assert not samples[f"{GPU1}/gi8"].has_owner
    assert samples[GPU1].pod == "notebook-abc"


def test_the_agent_integrates_nvmls_sample_buffer_into_counters_and_serves_them() -> None:
    nvml = fake_gpus()
    # 200 ms samples: 1 s busy at 100 %, then 1 s at 2 % (idle); GPU0's buffer starts at t = 10 s.
    nvml.gpus[0].samples = [(10_000_000 + 200_000 * k, 100 if k <= 5 else 2) for k in range(11)]
    agent = Agent(NVMLReader(nvml, clock=lambda: 12.0), None, "node-a")
    asyncio.run(agent.sample_once())
    page = agent.page
    assert "# TYPE runyard_gpu_busy_seconds_total counter" in page
    samples = {s.key: s for s in parse_exposition(page, 12.0, node="node-a")}
    whole = samples[GPU0]
    # The first sample only starts the count: 5 x 0.2 s at 100 %, 5 x 0.2 s at 2 %.
    assert whole.has_counters and whole.sampled_seconds == pytest.approx(2.0)
    assert whole.busy_seconds == pytest.approx(1.0 + 1.0 * 0.02) and whole.idle_seconds == pytest.approx(1.0)
    assert whole.energy_mj == 5_000_000  # the DCGM-named counter, and runyard_gpu_energy_joules_total beside it
    assert "runyard_gpu_energy_joules_total{" in page
    # A MIG-enabled GPU has no utilisation to integrate: no counters rather than zeros (its slices use gauges).
    assert not samples[GPU1].has_counters and not samples[f"{GPU1}/gi7"].has_counters

    # The next pass asks only for newer samples; none is newer (NVML's NOT_FOUND): the counters stand still.
    asyncio.run(agent.sample_once())
    again = {s.key: s for s in parse_exposition(agent.page, 13.0, node="node-a")}[GPU0]
    assert (again.busy_seconds, again.sampled_seconds) == (whole.busy_seconds, whole.sampled_seconds)
    nvml.gpus[0].samples.append((12_200_000, 50))
    asyncio.run(agent.sample_once())
    later = {s.key: s for s in parse_exposition(agent.page, 14.0, node="node-a")}[GPU0]
    assert later.sampled_seconds == pytest.approx(2.2) and later.busy_seconds == pytest.approx(1.12)


def test_without_a_sample_buffer_the_agent_integrates_its_own_polls() -> None:
    clock = iter([100.0, 100.5, 101.0, 103.0])
    nvml = FakeNVML([FakeGPU(GPU0, util=40)])
    agent = Agent(NVMLReader(nvml, clock=lambda: next(clock)), None, "node-a")
    for _ in range(4):
        asyncio.run(agent.sample_once())
    (sample,) = parse_exposition(agent.page, 103.0, node="node-a")
    # 0.5 s + 0.5 s, then a 2 s gap of which a poll stands for at most 1 s (MAX_SAMPLE_SPAN_SECONDS).
    assert sample.sampled_seconds == pytest.approx(2.0) and sample.busy_seconds == pytest.approx(0.8)


def test_agent_serves_metrics_over_http(socket_path: str) -> None:
    server = start_kubelet(socket_path, fixture_response())

    async def body() -> tuple[str, int]:
        agent = Agent(NVMLReader(fake_gpus()), pr.PodResourcesClient(socket_path), "node-a", interval=0.05)
        stop = asyncio.Event()
        port = free_port()
        task = asyncio.create_task(serve(agent, "127.0.0.1", port, stop))
        try:
            for _ in range(100):
                await asyncio.sleep(0.05)
                if agent.page:
                    break
            text = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
            health = await asyncio.to_thread(_status, f"http://127.0.0.1:{port}/health")
        finally:
            stop.set()
            await task
        return text, health

    try:
        text, health = asyncio.run(body())
    finally:
        server.stop(None).wait()
    assert health == 200
    pods = {s.pod for s in parse_exposition(text, 1.0)}
    assert {"llama-ft-worker-0", "eval-job-7x2kq", "notebook-abc"} <= pods


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def _status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return int(resp.status)
