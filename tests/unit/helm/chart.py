"""Helpers to find the pinned helm binary and render helm/runyard into parsed documents."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "helm" / "runyard"
SCENARIOS = sorted(CHART.glob("ci/*-values.yaml"))
RELEASE = "runyard"
NAMESPACE = "runyard-system"


def helm_path() -> Path:
    """Where hack/build-binaries.sh puts helm (same derivation as hack/localcluster.py for the other binaries)."""
    cache = Path(os.environ.get("RUNYARD_CACHE", Path.home() / ".cache" / "runyard"))
    return cache / "bin" / f"helm-{os.environ.get('HELM_VERSION', 'v3.21.4')}" / "helm"


def helm(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([str(helm_path()), *args], capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({res.returncode}):\n{res.stderr}")
    return res


def template(*args: str, chart: Path = CHART, release: str = RELEASE, namespace: str = NAMESPACE) -> str:
    return helm("template", release, str(chart), "--namespace", namespace, *args).stdout


def documents(rendered: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(rendered) if d]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
