"""`runyard-operator run`: command-line flags and env, logging, and the asyncio entry point around kopf."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence

from runyard_operator import __version__


def _env(name: str, default: str) -> str:
    return os.environ.get(f"RUNYARD_{name}", default)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runyard-operator", description="Runyard TrainingRun operator.")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="Run the operator (reads KUBECONFIG or the in-cluster config).")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=None,
        help="Namespace to watch (repeatable; env RUNYARD_NAMESPACES, comma-separated). Default: all namespaces.",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=int(_env("METRICS_PORT", "8080")),
        help="Port of /metrics, /healthz and /readyz (env RUNYARD_METRICS_PORT).",
    )
    run.add_argument(
        "--log-format",
        choices=["json", "plain"],
        default=_env("LOG_FORMAT", "json"),
        help="Log format (env RUNYARD_LOG_FORMAT).",
    )
    run.add_argument("--log-level", default=_env("LOG_LEVEL", "INFO"), help="Log level (env RUNYARD_LOG_LEVEL).")
    run.add_argument(
        "--qps",
        type=float,
        default=float(_env("API_QPS", "500")),
        help="Client-side limit of API requests per second (env RUNYARD_API_QPS).",
    )
    run.add_argument(
        "--burst",
        type=int,
        default=int(_env("API_BURST", "1000")),
        help="Burst above --qps (env RUNYARD_API_BURST).",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=int(_env("WORKERS", "64")),
        help="Concurrent reconciles (env RUNYARD_WORKERS).",
    )
    run.add_argument(
        "--status-coalesce-seconds",
        type=float,
        default=float(_env("STATUS_COALESCE_SECONDS", "1.0")),
        help="Hold in-progress status changes this long so quick successions cost one write; terminal phases and "
        "restarts are always written at once (env RUNYARD_STATUS_COALESCE_SECONDS).",
    )
    run.add_argument(
        "--leader-elect",
        action="store_true",
        default=_env("LEADER_ELECT", "false").lower() in ("1", "true", "yes"),
        help="Run several replicas with one active, elected through a coordination.k8s.io Lease "
        "(env RUNYARD_LEADER_ELECT).",
    )
    run.add_argument("--lease-name", default=_env("LEASE_NAME", "runyard-operator"), help="Lease name.")
    run.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE", _env("LEASE_NAMESPACE", "default")),
        help="Namespace of the Lease (env POD_NAMESPACE, then RUNYARD_LEASE_NAMESPACE).",
    )
    run.add_argument(
        "--config",
        default=_env("CONFIG", ""),
        help="Operator configuration file (YAML: trackers, GPU metrics, artifacts; env RUNYARD_CONFIG).",
    )
    return parser


def configure_logging(fmt: str, level: str) -> None:
    import kopf

    kopf.configure(
        log_format=kopf.LogFormat.JSON if fmt == "json" else kopf.LogFormat.PLAIN,
        verbose=level.upper() == "DEBUG",
    )
    logging.getLogger().setLevel(level.upper())
    # aiohttp's access log and kopf's per-object chatter are noise at INFO.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    # botocore's DEBUG lines carry request signatures and the access key id: never below INFO, whatever the level.
    for name in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLogger().level))


async def run_operator(args: argparse.Namespace) -> None:
    import kopf
    from kopf._core.engines.peering import Identity  # kopf takes the parameter but does not export its NewType

    from runyard_operator import handlers, metrics
    from runyard_operator.config import load_config
    from runyard_operator.controller import Controller
    from runyard_operator.k8s import Kube
    from runyard_operator.plugins import build_plugins
    from runyard_operator.sweeps import SweepController

    config = load_config(args.config or None)
    namespaces = args.namespace or [n for n in _env("NAMESPACES", "").split(",") if n]
    # Each worker sends at most a few requests at once (a run's children go out together); more connections
    # than that only cost TLS buffers here and in the apiserver.
    kube = await Kube.connect(qps=args.qps, burst=args.burst, connections=2 * args.workers + 16)
    controller = Controller(
        kube,
        plugins=build_plugins(config),
        workers=args.workers,
        ssh_keygen=_ssh_keygen,
        coalesce_seconds=args.status_coalesce_seconds,
        namespace_policy=config.namespace_policy(os.environ.get("POD_NAMESPACE")),
        pod_policy=config.pod_policy_rules(),
    )
    mlflow = config.tracking.mlflow
    sweeps = SweepController(kube, mlflow_uri=mlflow.tracking_uri if mlflow else None)
    registry = kopf.OperatorRegistry()
    handlers.register(registry, controller, namespaces=namespaces, sweeps=sweeps)
    ready = asyncio.Event()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    health = metrics.HealthServer(args.metrics_port, ready)
    await health.start()
    logging.getLogger(__name__).info(
        "runyard-operator %s starting: namespaces=%s metrics=:%d qps=%s burst=%s workers=%d",
        __version__,
        namespaces or "all",
        args.metrics_port,
        args.qps,
        args.burst,
        args.workers,
    )
    elector = None
    if args.leader_elect:
        from runyard_operator.leader import LeaderElector

        identity = f"{os.environ.get('HOSTNAME', 'runyard-operator')}-{os.getpid()}"
        elector = LeaderElector(kube, args.lease_namespace, args.lease_name, identity)
        # A standby is healthy and ready (a rollout must not wait on it); it only does not reconcile.
        ready.set()
        metrics.LEADER.set(0)
        waiting = asyncio.create_task(elector.lead())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            waiting.cancel()
            await health.stop()
            await kube.close()
            return
        metrics.LEADER.set(1)
        watchdog = asyncio.create_task(_stop_when(elector.lost, stop))
    try:
        await kopf.operator(
            registry=registry,
            clusterwide=not namespaces,
            namespaces=namespaces,
            standalone=True,
            # kopf's default identity asks the password database for the user name, which a numeric non-root
            # user of a container image (65532, no /etc/passwd entry) does not have: kopf would crash at start.
            identity=Identity(f"{socket.gethostname()}@{os.getpid()}"),
            ready_flag=asyncio.Event() if elector else ready,
            stop_flag=stop,
        )
    finally:
        if elector is not None:
            watchdog.cancel()
            await elector.release()
        await health.stop()
        await kube.close()
    if elector is not None and elector.lost.is_set():
        raise SystemExit("leadership lost; exiting so a restart rejoins the election")


async def _stop_when(event: asyncio.Event, stop: asyncio.Event) -> None:
    await event.wait()
    stop.set()


def _ssh_keygen() -> tuple[str, str]:
    """A fresh ed25519 key pair for an MPI run (OpenSSH formats)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return private, public


def main(argv: Sequence[str] | None = None) -> int:
    # kopf imports the Kubernetes client libraries whenever they are installed (the runyard SDK brings the sync one)
    # only to recognise their model classes, which the operator never hands it; blocking them saves ~80 MB.
    sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]
    sys.modules.setdefault("kubernetes_asyncio", None)  # type: ignore[arg-type]
    args = build_parser().parse_args(argv)
    configure_logging(args.log_format, args.log_level)
    from runyard_operator.config import ConfigError, load_config

    try:
        load_config(args.config or None)  # a bad file stops here with its problems, not with a traceback
    except ConfigError as err:
        print(f"runyard-operator: {err}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        # The standard event loop, not uvloop: under uvloop an apiserver restart made aiohttp's reconnect raise
        # "File descriptor N is used by transport" (MagicStack/uvloop#653, open), which killed kopf's watchers and
        # with them the operator (the CI's apiserver/etcd chaos scenario: every run untouched for 300 s).
        asyncio.run(run_operator(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
