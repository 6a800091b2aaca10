"""runyard-gpu-agent: a per-node DaemonSet that reads NVML, maps GPUs to pods via PodResources, serves DCGM format.

The operator's scrape path reads it exactly like a DCGM exporter (`gpuMetrics.source: agent`). Run it with
`python -m runyard_operator.gpu.agent --node-name $NODE_NAME` (privileged enough to read the pod-resources socket).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping, Sequence

from aiohttp import web

from runyard.gpu.integrator import IDLE_PERCENT, UtilizationCounters, UtilizationIntegrator
from runyard.gpu.nvml import DeviceReading, NVMLReader
from runyard_operator.gpu.podresources import DEFAULT_SOCKET, DeviceOwner, PodResourcesClient, owners_from_response

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# (metric, type, help, reading -> value, integer formatting) in the exporter's own names and units.
_FAMILIES: list[tuple[str, str, str, str, bool]] = [
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", "utilization_pct", True),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", "memory_used_mib", True),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).", "memory_free_mib", True),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", "power_watts", False),
    (
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "counter",
        "Total energy consumption since boot (in mJ).",
        "energy_mj",
        True,
    ),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", "temperature_c", True),
]
_MIB = 1048576

# Cumulative counters beside the gauges (Prometheus naming: base units, `_total`), per whole GPU. The operator takes
# deltas between scrapes, so its utilisation, idle time and power do not depend on the scrape interval (gpu/integrator.py).
BUSY_TOTAL = "runyard_gpu_busy_seconds_total"
IDLE_TOTAL = "runyard_gpu_idle_seconds_total"
SAMPLED_TOTAL = "runyard_gpu_sampled_seconds_total"
ENERGY_TOTAL = "runyard_gpu_energy_joules_total"
_COUNTERS: list[tuple[str, str]] = [
    (BUSY_TOTAL, "Time the GPU was busy: the integral of its utilisation over time (in s)."),
    (IDLE_TOTAL, f"Time the GPU's utilisation was below {IDLE_PERCENT:g} percent (in s)."),
    (SAMPLED_TOTAL, "Time covered by utilisation samples, the denominator of busy and idle time (in s)."),
    (ENERGY_TOTAL, "Energy used by the GPU since the driver was loaded (in J)."),
]


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _field(reading: DeviceReading, name: str) -> float | None:
    if name == "memory_used_mib":
        return reading.memory_used_bytes / _MIB if reading.memory_used_bytes is not None else None
    if name == "memory_free_mib":
        if reading.memory_used_bytes is None or reading.memory_total_bytes is None:
            return None
        return (reading.memory_total_bytes - reading.memory_used_bytes) / _MIB
    value = getattr(reading, name)
    return float(value) if value is not None else None


def _labels(r: DeviceReading, owners: Mapping[str, DeviceOwner], hostname: str) -> str:
    labels = [
        ("gpu", str(r.index)),
        ("UUID", r.uuid),
        ("pci_bus_id", r.bus_id),
        ("device", f"nvidia{r.index}"),
        ("modelName", r.name),
    ]
    if r.gi_id is not None:
        labels += [("GPU_I_PROFILE", r.mig_profile), ("GPU_I_ID", str(r.gi_id))]
    labels.append(("hostname", hostname))
    owner = owners.get(r.mig_uuid) if r.gi_id is not None else owners.get(r.uuid)
    if owner is not None:
        labels += [("container", owner.container), ("namespace", owner.namespace), ("pod", owner.pod)]
    return ",".join(f'{k}="{_quote(v)}"' for k, v in labels)


def render(
    readings: Sequence[DeviceReading],
    owners: Mapping[str, DeviceOwner],
    hostname: str,
    counters: Mapping[str, UtilizationCounters] | None = None,
) -> str:
    """The DCGM exporter's exposition (label names and order as in 4.x, lowercase `hostname` as on its main), then
    Runyard's counters with the same labels: `counters` by GPU UUID (whole GPUs), energy from NVML's own counter."""
    lines: list[str] = []
    for metric, kind, help_text, attr, integer in _FAMILIES:
        body: list[str] = []
        for r in readings:
            value = _field(r, attr)
            if value is None:
                continue
            body.append(f"{metric}{{{_labels(r, owners, hostname)}}} {int(value) if integer else f'{value:f}'}")
        if body:
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} {kind}", *body]
    for metric, help_text in _COUNTERS:
        body = []
        for r in readings:
            value = _counter(r, metric, counters or {})
            if value is not None:
                body.append(f"{metric}{{{_labels(r, owners, hostname)}}} {value:.6f}")
        if body:
            lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter", *body]
    return "\n".join(lines) + "\n"


def _counter(r: DeviceReading, metric: str, counters: Mapping[str, UtilizationCounters]) -> float | None:
    if metric == ENERGY_TOTAL:
        return r.energy_mj / 1000.0 if r.energy_mj is not None else None
    # Utilisation belongs to whole GPUs: NVML has none for MIG instances.
    mine = counters.get(r.uuid) if r.gi_id is None else None
    if mine is None:
        return None
    if metric == BUSY_TOTAL:
        return mine.busy_seconds
    return mine.idle_seconds if metric == IDLE_TOTAL else mine.sampled_seconds


class Agent:
    """Samples on a timer and serves the latest page; NVML and gRPC run in worker threads, never on the loop."""

    def __init__(
        self,
        reader: NVMLReader,
        podresources: PodResourcesClient | None,
        hostname: str,
        interval: float = 1.0,
    ) -> None:
        self._reader = reader
        self._podresources = podresources
        self._hostname = hostname
        self._interval = interval
        self._page = ""
        self._owners: dict[str, DeviceOwner] = {}
        self._pods = 0
        self._podresources_errors = 0
        self._nvml_up = False
        self._healthy = False
        self._task: asyncio.Task[None] | None = None
        self._integrators: dict[str, UtilizationIntegrator] = {}

    @property
    def page(self) -> str:
        return self._page

    async def sample_once(self) -> None:
        """One pass: the kubelet's pod mapping and NVML, each on its own (either may be missing on a node)."""
        if self._podresources is not None:
            try:
                response = await asyncio.to_thread(self._podresources.list)
                self._owners = owners_from_response(response)
                self._pods = len(response.pod_resources)
            except Exception as err:  # keep the last mapping: a kubelet restart must not blank the pod labels
                self._podresources_errors += 1
                logger.warning("podresources List failed: %s", err)
        since = {uuid: i.last_time or 0.0 for uuid, i in self._integrators.items()}
        try:
            readings = await asyncio.to_thread(self._reader.read, since)
            self._nvml_up = True
        except Exception as err:
            if self._nvml_up or not self._page:
                logger.warning("NVML unavailable: %s", err)
            readings, self._nvml_up = [], False
        counters = self.integrate(readings)
        self._page = render(readings, self._owners, self._hostname, counters) + self._self_metrics()
        self._healthy = True

    def integrate(self, readings: Sequence[DeviceReading]) -> dict[str, UtilizationCounters]:
        """Fold each whole GPU's new utilisation samples (NVML's buffer, else this pass's poll) into its counters."""
        out: dict[str, UtilizationCounters] = {}
        for r in readings:
            if r.gi_id is not None:
                continue
            samples = r.utilization_points()
            if r.utilization_samples is None and not samples and r.uuid not in self._integrators:
                continue  # no utilisation at all (MIG mode): no counters rather than zeros
            integrator = self._integrators.setdefault(r.uuid, UtilizationIntegrator())
            integrator.feed(samples)
            out[r.uuid] = integrator.counters
        return out

    def _self_metrics(self) -> str:
        """The agent's own state: whether NVML answers, and what the kubelet's PodResources API last listed."""
        h = self._hostname.replace("\\", "\\\\").replace('"', '\\"')
        return (
            "# HELP runyard_gpu_agent_nvml_up Whether the last NVML read succeeded.\n"
            "# TYPE runyard_gpu_agent_nvml_up gauge\n"
            f'runyard_gpu_agent_nvml_up{{hostname="{h}"}} {int(self._nvml_up)}\n'
            "# HELP runyard_gpu_agent_pods Pods in the kubelet's last PodResources List.\n"
            "# TYPE runyard_gpu_agent_pods gauge\n"
            f'runyard_gpu_agent_pods{{hostname="{h}"}} {self._pods}\n'
            "# HELP runyard_gpu_agent_podresources_errors_total Failed PodResources List calls.\n"
            "# TYPE runyard_gpu_agent_podresources_errors_total counter\n"
            f'runyard_gpu_agent_podresources_errors_total{{hostname="{h}"}} {self._podresources_errors}\n'
        )

    async def _loop(self) -> None:
        while True:
            try:
                await self.sample_once()
            except Exception:
                self._healthy = False
                logger.exception("NVML sampling failed")
            await asyncio.sleep(self._interval)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        return app

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=self._page.encode(), headers={"Content-Type": CONTENT_TYPE})

    async def _health(self, _: web.Request) -> web.Response:
        return web.Response(status=200 if self._healthy else 503, text="ok" if self._healthy else "not sampling")

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await asyncio.to_thread(self._reader.close)
        if self._podresources is not None:
            self._podresources.close()


async def serve(agent: Agent, host: str, port: int, stop: asyncio.Event) -> None:
    runner = web.AppRunner(agent.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    await agent.start()
    try:
        await stop.wait()
    finally:
        await agent.stop()
        await runner.cleanup()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="runyard-gpu-agent", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=int(os.environ.get("RUNYARD_GPU_AGENT_PORT", "9400")))
    p.add_argument("--interval", type=float, default=1.0, help="Seconds between NVML samples.")
    p.add_argument("--node-name", default=os.environ.get("NODE_NAME", os.uname().nodename))
    p.add_argument(
        "--pod-resources-socket",
        default=DEFAULT_SOCKET,
        help="kubelet PodResources socket; 'none' disables pod mapping.",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    podresources = None if args.pod_resources_socket == "none" else PodResourcesClient(args.pod_resources_socket)
    agent = Agent(NVMLReader(), podresources, args.node_name, args.interval)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(agent, args.host, args.port, stop)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
