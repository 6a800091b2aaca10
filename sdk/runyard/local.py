"""Local runs: a TrainingRun's replicas as processes on this machine, with the same env contract as in the cluster.

Each replica gets `build_env(run, role, index, LocalAddressing(base_port))` (integer indices, distinct ports on
127.0.0.1) plus the tracking env. Which processes start and how is the framework profile's decision
(`runyard.frameworks`), the same one the pods follow: e.g. PyTorch's `python X` runs as
`python -m torch.distributed.run X`; an MPI run starts only its launcher, whose `mpirun` reads a localhost hostfile
(in the cluster the workers only run sshd). `$(VAR)` references in the env and the command are expanded exactly as
the kubelet expands them.

Gang semantics as in the operator: the first replica that exits non-zero fails the run and the others are
terminated; the run succeeds when the profile's success roles finished, after which leftovers (parameter servers)
are stopped.
Each run gets `<state_dir>/runs/<name>-<timestamp>/` with `logs/<role>-<index>.log` and
`artifacts/<role>-<index>/` (the replica's RUNYARD_ARTIFACT_DIR, the seam for artifact collection).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from runyard import constants as c
from runyard import frameworks, ports, trackers
from runyard.api import TrainingRun
from runyard.exceptions import LocalRunError, ValidationFailedError
from runyard.gpu.telemetry import GPUTelemetry, GPUTelemetrySummary
from runyard.trackers.mlflow import MLflow

if TYPE_CHECKING:
    from runyard.artifacts.local import ArtifactsSummary
    from runyard.tracking.local import LocalTracking

__all__ = [
    "LocalProcess",
    "LocalRunResult",
    "ReplicaResult",
    "format_summary",
    "latest_run_dir",
    "plan_local",
    "run_local",
]

TORCHRUN_NAMES = frozenset({"torchrun"})
# Seconds a replica gets between SIGTERM and SIGKILL, and that non-success roles get to exit on their own.
TERMINATE_GRACE = 5.0
LINGER_GRACE = 5.0
POLL_INTERVAL = 0.05
LineSink = Callable[[str, str], None]


@dataclass(frozen=True)
class LocalProcess:
    """One local replica: its command line and the env it adds to the parent's."""

    role: str
    index: int
    global_rank: int
    argv: list[str]
    env: dict[str, str]

    @property
    def label(self) -> str:
        """`role-index`, the prefix of its log lines."""
        return f"{self.role}-{self.index}"


@dataclass(frozen=True)
class ReplicaResult:
    """How one replica ended; `returncode` is None when it was still running at the end (then terminated)."""

    role: str
    index: int
    returncode: int | None
    log_path: Path
    terminated: bool = False

    @property
    def label(self) -> str:
        """`role-index`."""
        return f"{self.role}-{self.index}"


@dataclass
class LocalRunResult:
    """Outcome of `run_local`.

    `exit_code` is what `runyard run --local` exits with: 0 success, 1 a replica failed (or the run timed out),
    130 interrupted.
    """

    name: str
    framework: str
    succeeded: bool
    exit_code: int
    duration_seconds: float
    run_dir: Path
    artifact_dir: Path
    log_dir: Path
    replicas: list[ReplicaResult]
    failure: ReplicaResult | None = None
    reason: str = ""
    interrupted: bool = False
    tracking_url: str | None = None
    tracking_uri: str | None = None
    experiment_id: str | None = None
    run_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    artifact_files: int | None = None
    newest_checkpoint: str | None = None
    gpu: GPUTelemetrySummary | None = None  # the visible GPUs' use, where NVML answered


def _command(run: TrainingRun, role: str) -> list[str]:
    spec = run.spec
    replica = spec.replicas[role]
    command = replica.command if replica.command is not None else spec.command
    args = replica.args if replica.args is not None else spec.args
    if not command:
        raise LocalRunError(
            f"run {run.name}: spec.command is required for local runs (the image's entrypoint is not known here)"
        )
    return [*command, *(args or [])]


def _python_argv(argv: list[str], python: str) -> list[str]:
    """The launched argv with this interpreter for `python` and `torchrun` (so ranks use the venv running Runyard).

    torchrun reads its flags from the PET_* env exactly as in a pod, so local and cluster ranks start alike.
    """
    from runyard.frameworks.base import is_python

    if Path(argv[0]).name in TORCHRUN_NAMES:
        return [python, "-m", "torch.distributed.run", *argv[1:]]
    if is_python(argv[0]):
        return [python, *argv[1:]]
    return argv


def _env_values(
    entries: list[dict[str, Any]],
    overrides: Mapping[str, str],
    warned: set[str],
    warn: Callable[[str], None],
) -> dict[str, str]:
    """The literal env of a local process: `overrides` replace values in place, then `$(VAR)` expands as in a pod."""
    from runyard.builders.expansion import expand_env

    literal: list[dict[str, Any]] = []
    for entry in entries:
        if "value" in entry:
            literal.append({"name": entry["name"], "value": overrides.get(entry["name"], entry["value"])})
        elif entry["name"] not in warned:
            # Secrets, ConfigMaps and pod fields exist only in the cluster; the variable stays unset locally.
            warned.add(entry["name"])
            warn(f"env {entry['name']}: valueFrom is not available in local runs; left unset")
    return expand_env(literal)


def plan_local(
    run: TrainingRun,
    *,
    base_port: int,
    run_dir: Path,
    python: str = sys.executable,
    tracking: LocalTracking | None = None,
    resume_from: str | None = None,
    warn: Callable[[str], None] = lambda message: None,
) -> list[LocalProcess]:
    """The processes of a local run, without starting anything (writes the MPI hostfile into `run_dir`).

    Args:
        run: the validated run.
        base_port: first port of the run's `LocalAddressing`.
        run_dir: the run's directory; artifacts go to `run_dir/artifacts/<role>-<index>`.
        python: interpreter that replaces `python` in commands (the one running Runyard by default).
        tracking: the local tracking whose env every replica gets.
        resume_from: checkpoint (or run directory) handed to every replica as RUNYARD_RESUME_FROM.
        warn: receives notes about things that cannot be reproduced locally.

    Returns:
        One LocalProcess per process to start, in canonical role order.

    Raises:
        LocalRunError: the spec cannot run locally (no command, python without a script...).
    """
    from runyard.builders import BuildContext, LocalAddressing, build_env
    from runyard.builders.expansion import expand_argv

    addressing = LocalAddressing(base_port)
    profile = frameworks.of(run.spec)
    tracking_env = dict(tracking.env) if tracking else {}
    profile.prepare_local(run, run_dir, addressing)
    # Every replica shares the machine's cores; without a cap each framework starts one thread per core.
    threads = str(max(1, (os.cpu_count() or 1) // max(1, profile.local_process_count(run.spec))))
    processes = []
    warned: set[str] = set()
    for replica in profile.local_replicas(run.spec):
        role, index, rank = replica.role, replica.index, replica.rank
        extra = {**tracking_env, **(tracking.rank_env(role, index, rank) if tracking else {})}
        ctx = BuildContext(extra_env=tuple({"name": k, "value": v} for k, v in extra.items()), resume_from=resume_from)
        artifact_dir = run_dir / "artifacts" / f"{role}-{index}"
        overrides = {c.ENV_ARTIFACT_DIR: str(artifact_dir)}
        if not tracking:
            overrides.update(trackers.base_env(run, str(artifact_dir)))
        env = _env_values(build_env(run, role, index, addressing, ctx), overrides, warned, warn)
        env.setdefault("OMP_NUM_THREADS", threads)
        profile.local_env(run, env, run_dir)
        # Like the kubelet: command and args see the container's env, never the host's.
        argv = _python_argv(
            profile.local_argv(run, role, expand_argv(_command(run, role), env), run_dir, addressing), python
        )
        processes.append(LocalProcess(role, index, rank, argv, env))
    return processes


def _ports(run: TrainingRun, base_port: int) -> list[int]:
    from runyard.builders import LocalAddressing

    addressing = LocalAddressing(base_port)
    default = frameworks.port_of(run.spec)
    roles = frameworks.roles_of(run.spec)
    return [addressing.port(role, i, default) for role in roles for i in range(run.spec.replicas[role].replicas)]


def choose_base_port(run: TrainingRun, attempts: int = 200) -> int:
    """A base port whose every replica port is free now and outside the kernel's ephemeral range (runyard.ports)."""
    try:
        return ports.free_base(_ports(run, 0), attempts)
    except (OSError, ValueError) as err:
        raise LocalRunError(f"no free port range found for the run's replicas: {err}") from err


def _load(source: TrainingRun | Mapping[str, Any] | str | Path) -> TrainingRun:
    from runyard.validation import load_manifests, validate_manifest

    if isinstance(source, TrainingRun):
        return source
    if isinstance(source, Mapping):
        docs = [dict(source)]
    else:
        try:
            docs = load_manifests(source)
        except (ValueError, OSError) as exc:
            raise ValidationFailedError(f"{source}: {exc}", [str(exc)]) from exc
    if len(docs) != 1:
        raise ValidationFailedError(f"{source}: expected one TrainingRun document, found {len(docs)}")
    problems = validate_manifest(docs[0])
    if problems:
        raise ValidationFailedError("invalid TrainingRun: " + "; ".join(map(str, problems)), [str(p) for p in problems])
    return TrainingRun.model_validate(docs[0])


def _wants_tracking(run: TrainingRun, tracking_uri: str | None) -> bool:
    tracking = run.spec.tracking
    if tracking is None:
        return tracking_uri is not None
    return not tracking.trackers or MLflow.name in tracking.trackers or tracking_uri is not None


def _start_tracking(
    run: TrainingRun,
    state_dir: Path,
    run_dir: Path,
    tracking_uri: str | None,
    mode: bool | None,
    warn: Callable[[str], None],
) -> LocalTracking | None:
    if mode is False or (mode is None and not _wants_tracking(run, tracking_uri)):
        return None
    try:
        from runyard.tracking.local import start_local_tracking
    except ImportError as exc:
        if mode:
            raise LocalRunError(f"tracking needs the tracking extra (pip install 'runyard[tracking]'): {exc}") from exc
        warn(f"tracking disabled: {exc}")
        return None
    return start_local_tracking(run, state_dir=state_dir, tracking_uri=tracking_uri, output_dir=run_dir / "outputs")


def _pump(stream: IO[bytes], label: str, log: IO[bytes], sink: LineSink) -> None:
    for raw in iter(stream.readline, b""):
        log.write(raw)
        log.flush()
        sink(label, raw.decode(errors="replace").rstrip("\r\n"))
    stream.close()


def _terminate(procs: list[subprocess.Popen[bytes]]) -> set[int]:
    """SIGTERM every live process group, SIGKILL what is left after the grace period; returns the pids stopped."""
    stopped = set()
    for proc in procs:
        if proc.poll() is None:
            stopped.add(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + TERMINATE_GRACE
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return stopped


def _default_sink() -> LineSink:
    lock = threading.Lock()

    def sink(label: str, line: str) -> None:
        with lock:
            sys.stdout.write(f"[{label}] {line}\n")
            sys.stdout.flush()

    return sink


def run_local(
    source: TrainingRun | Mapping[str, Any] | str | Path,
    *,
    state_dir: str | Path = c.LOCAL_STATE_DIR,
    tracking_uri: str | None = None,
    tracking: bool | None = None,
    base_port: int | None = None,
    timeout: float | None = None,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    resume_from: str | Path | None = None,
    on_line: LineSink | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> LocalRunResult:
    """Run a TrainingRun's replicas as local processes and wait for the outcome.

    Args:
        source: a TrainingRun, a manifest dict, or the path (or text) of a one-document YAML manifest.
        state_dir: Runyard's local state: `runs/` and the embedded MLflow store (`mlflow.db`, `mlartifacts/`).
        tracking_uri: MLflow tracking URI; default `$MLFLOW_TRACKING_URI`, else the embedded store.
        tracking: True forces tracking, False disables it; None tracks when `spec.tracking` asks for MLflow
            (or a tracking URI is given).
        base_port: first port of the local addressing; default a random free range.
        timeout: fail the run (exit code 1) after this many seconds.
        cwd: working directory of the replicas; default the current one (commands are relative to it).
        env: extra env for every replica (overrides the parent's, not the run's contract).
        resume_from: a checkpoint or earlier run directory, passed to every replica as RUNYARD_RESUME_FROM.
        on_line: receives `(label, line)` for every output line; default prints `[label] line` to stdout.
        on_notice: receives Runyard's own messages; default prints them to stderr.

    Returns:
        LocalRunResult with the outcome, per-replica exit codes, directories, tracking ids and final metrics.

    Raises:
        ValidationFailedError: the manifest is invalid.
        LocalRunError: it cannot run locally (no command, launcher missing...).

    Example:
        >>> result = run_local("examples/pytorch-ddp.yaml")  # doctest: +SKIP
        >>> result.succeeded, result.metrics["accuracy"]     # doctest: +SKIP
    """
    run = _load(source)
    sink = on_line or _default_sink()

    def notice(message: str) -> None:
        if on_notice:
            on_notice(message)
        else:
            sys.stderr.write(f"runyard: {message}\n")

    state = Path(state_dir).resolve()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = state / "runs" / f"{run.name}-{stamp}"
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = state / "runs" / f"{run.name}-{stamp}-{suffix}"
    log_dir = run_dir / "logs"
    log_dir.mkdir(parents=True)
    (run_dir / "trainingrun.yaml").write_text(_dump(run))
    tracker = _start_tracking(run, state, run_dir, tracking_uri, tracking, notice)
    port = base_port if base_port is not None else choose_base_port(run)
    resume = str(Path(resume_from).resolve()) if resume_from else None
    plan = plan_local(run, base_port=port, run_dir=run_dir, tracking=tracker, resume_from=resume, warn=notice)
    bin_dir = str(Path(sys.executable).parent)
    base_env = {**os.environ, **(env or {})}
    # Commands that call `python` through a launcher (mpirun) must find this interpreter first, and launchers installed
    # beside it (deepspeed, mpirun wrappers) are found as the replicas will find them.
    base_env["PATH"] = os.pathsep.join([bin_dir, base_env.get("PATH", "")])
    for needed in {p.argv[0] for p in plan}:
        if shutil.which(needed, path=base_env["PATH"]) is None and not Path(needed).exists():
            raise LocalRunError(f"{needed} not found: it is needed to run {run.spec.framework} locally")

    procs: list[subprocess.Popen[bytes]] = []
    pumps: list[threading.Thread] = []
    logs: list[IO[bytes]] = []
    # The GPUs the replicas see, once a second into the tracked run; nothing at all without NVML or a GPU.
    telemetry = GPUTelemetry.start(
        node=socket.gethostname(),
        cuda_visible_devices=base_env.get(c.ENV_CUDA_VISIBLE_DEVICES),
        log=tracker.log_metrics if tracker is not None and tracker.run_id else None,
    )
    started = time.monotonic()
    failure_index: int | None = None
    reason = ""
    interrupted = False
    succeeded = False
    stopped: set[int] = set()
    success_roles = frameworks.of(run.spec).success_roles(run.spec)
    try:
        for process in plan:
            (run_dir / "artifacts" / process.label).mkdir(parents=True, exist_ok=True)
            log = open(log_dir / f"{process.label}.log", "wb")  # noqa: SIM115 - closed in the finally below
            logs.append(log)
            proc = subprocess.Popen(
                process.argv,
                env={**base_env, **process.env},
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # own process group: we stop launchers with their children
            )
            procs.append(proc)
            assert proc.stdout is not None
            pump = threading.Thread(target=_pump, args=(proc.stdout, process.label, log, sink), daemon=True)
            pump.start()
            pumps.append(pump)
        success_done_at: float | None = None
        while True:
            codes = [p.poll() for p in procs]
            failed = [i for i, code in enumerate(codes) if code not in (None, 0)]
            if failed and success_done_at is None:
                failure_index = failed[0]
                reason = f"{plan[failure_index].label} exited with code {codes[failure_index]}"
                break
            if all(code == 0 for code in codes):
                succeeded = True
                break
            if success_done_at is None and all(codes[i] == 0 for i, p in enumerate(plan) if p.role in success_roles):
                success_done_at = time.monotonic()
            if success_done_at is not None and time.monotonic() - success_done_at > LINGER_GRACE:
                succeeded = True  # e.g. parameter servers, which serve until stopped
                break
            if timeout is not None and time.monotonic() - started > timeout:
                reason = f"timed out after {timeout:g}s"
                break
            time.sleep(POLL_INTERVAL)
    except KeyboardInterrupt:
        interrupted = True
        reason = "interrupted"
    finally:
        stopped = _terminate(procs)
        for pump in pumps:
            pump.join(timeout=10)
        for handle in logs:
            handle.close()
        gpu = telemetry.stop() if telemetry is not None else None
    duration = time.monotonic() - started
    replicas = [
        ReplicaResult(
            p.role,
            p.index,
            proc.returncode if proc.pid not in stopped else None,
            log_dir / f"{p.label}.log",
            proc.pid in stopped,
        )
        for p, proc in zip(plan, procs, strict=False)
    ]
    failure = replicas[failure_index] if failure_index is not None else None
    exit_code = 0 if succeeded else (130 if interrupted else 1)
    result = LocalRunResult(
        name=run.name,
        framework=run.spec.framework,
        succeeded=succeeded,
        exit_code=exit_code,
        duration_seconds=duration,
        run_dir=run_dir,
        artifact_dir=run_dir / "artifacts",
        log_dir=log_dir,
        replicas=replicas,
        failure=failure,
        reason=reason or ("succeeded" if succeeded else "failed"),
        interrupted=interrupted,
        gpu=gpu,
    )
    summary = _finalize_artifacts(result, notice)
    if tracker is not None:
        if gpu is not None:
            try:
                tracker.log_metrics(0, gpu.metrics())
            except Exception as exc:
                notice(f"could not log the GPU summary: {exc}")
        if summary is not None and tracker.run_id and tracker.tracking_uri:
            _link_artifacts(tracker.tracking_uri, tracker.run_id, summary, notice)
        status: Literal["FINISHED", "FAILED", "KILLED"] = (
            "FINISHED" if succeeded else ("KILLED" if interrupted else "FAILED")
        )
        try:
            tracker.finish(status)
            result.metrics = tracker.final_metrics()
        except Exception as exc:  # the run's outcome must not be lost to a tracking-store hiccup
            notice(f"could not finish the tracked run: {exc}")
        result.tracking_url = tracker.url
        result.tracking_uri = tracker.tracking_uri
        result.experiment_id = tracker.experiment_id
        result.run_id = tracker.run_id
    _write_result(result)
    return result


def _finalize_artifacts(result: LocalRunResult, notice: Callable[[str], None]) -> ArtifactsSummary | None:
    """Hash what the ranks wrote under artifacts/<role>-<index>/ into the run's manifest."""
    from runyard.artifacts.local import finalize

    try:
        summary = finalize(result.artifact_dir, run=result.name)
    except Exception as exc:  # a manifest problem must not hide the run's outcome
        notice(f"could not write the artifact manifest: {exc}")
        return None
    result.artifact_files = summary.files
    result.newest_checkpoint = summary.newest_checkpoint
    return summary


def _link_artifacts(tracking_uri: str, run_id: str, summary: ArtifactsSummary, notice: Callable[[str], None]) -> None:
    """Point the tracked run at the artifacts: their location and checkpoint as tags, the manifest as an artifact."""
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri)
        client.set_tag(run_id, "runyard.artifacts.location", summary.store_uri)
        client.set_tag(run_id, "runyard.artifacts.files", str(summary.files))
        if summary.newest_checkpoint:
            client.set_tag(run_id, "runyard.artifacts.newest_checkpoint", summary.newest_checkpoint)
        client.log_artifact(run_id, summary.manifest)
    except Exception as exc:  # tracking hiccups never change the run's outcome
        notice(f"could not record the artifacts in the tracked run: {exc}")


def _write_result(result: LocalRunResult) -> None:
    # result.json lets `runyard plot` (and artifact collection) find a past run's tracking ids and outcome.
    info = {
        "name": result.name,
        "framework": result.framework,
        "succeeded": result.succeeded,
        "exit_code": result.exit_code,
        "reason": result.reason,
        "duration_seconds": round(result.duration_seconds, 3),
        "replicas": {r.label: r.returncode for r in result.replicas},
        "artifact_dir": str(result.artifact_dir),
        "artifact_files": result.artifact_files,
        "newest_checkpoint": result.newest_checkpoint,
        "tracking_uri": result.tracking_uri,
        "experiment_id": result.experiment_id,
        "run_id": result.run_id,
        "url": result.tracking_url,
        "metrics": result.metrics,
        "gpu": asdict(result.gpu) if result.gpu is not None else None,
    }
    (result.run_dir / "result.json").write_text(json.dumps(info, indent=2) + "\n")


def latest_run_dir(state_dir: str | Path = c.LOCAL_STATE_DIR, name: str | None = None) -> Path:
    """The most recent local run's directory (of run `name`, if given).

    Raises:
        FileNotFoundError: there is no such run.
    """
    runs = Path(state_dir) / "runs"
    candidates = [d for d in runs.glob(f"{name}-*" if name else "*") if (d / "result.json").exists()]
    if not candidates:
        raise FileNotFoundError(f"no finished local run{f' of {name}' if name else ''} under {runs}")
    return max(candidates, key=lambda d: (d / "result.json").stat().st_mtime)


def _dump(run: TrainingRun) -> str:
    from runyard.validation import dump_manifests

    return dump_manifests([run.to_manifest()])


def format_summary(result: LocalRunResult, *, cwd: Path | None = None) -> str:
    """A human summary of a local run: outcome, duration, replicas, final metrics, where things are."""
    here = cwd or Path.cwd()

    def rel(path: Path) -> str:
        try:
            return str(path.relative_to(here))
        except ValueError:
            return str(path)

    outcome = "Succeeded" if result.succeeded else ("Interrupted" if result.interrupted else "Failed")
    lines = [f"run {result.name} ({result.framework}): {outcome} in {result.duration_seconds:.1f}s"]
    if not result.succeeded:
        lines.append(f"  reason:    {result.reason}")
    codes = ", ".join(f"{r.label}={'terminated' if r.terminated else r.returncode}" for r in result.replicas)
    lines.append(f"  replicas:  {codes}")
    if result.metrics:
        shown = {k: v for k, v in sorted(result.metrics.items()) if "/" not in k} or dict(
            sorted(result.metrics.items())
        )
        lines.append("  metrics:   " + ", ".join(f"{k}={v:.4g}" for k, v in list(shown.items())[:12]))
    lines.append(f"  run dir:   {rel(result.run_dir)}")
    files = f" ({result.artifact_files} files)" if result.artifact_files is not None else ""
    lines.append(f"  artifacts: {rel(result.artifact_dir)}{files}")
    if result.newest_checkpoint:
        lines.append(f"  checkpoint: {rel(Path(result.newest_checkpoint))}")
    lines.append(f"  logs:      {rel(result.log_dir)}")
    if result.gpu is not None:
        g = result.gpu
        util = f", {g.avg_utilization:.0f} % busy" if g.avg_utilization is not None else ""
        memory = f", peak memory {g.peak_memory_bytes / 2**30:.1f} GiB" if g.peak_memory_bytes is not None else ""
        lines.append(f"  gpus:      {g.gpus} ({g.gpu_hours:.4f} GPU-hours{util}{memory}, {g.energy_kwh * 1000:.2f} Wh)")
    if result.run_id:
        lines.append(f"  mlflow:    run {result.run_id} (experiment {result.experiment_id}) in {result.tracking_uri}")
    if result.tracking_url:
        lines.append(f"  open:      {result.tracking_url}")
    return "\n".join(lines)
