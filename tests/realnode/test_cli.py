"""The `runyard` CLI on an example that runs for real on the real node: submit (the fast path), wait, logs, list,
describe, top, delete."""

from __future__ import annotations

import json

from tests.conftest import Cluster
from tests.e2e.test_sdk_cli import cli
from tests.operator_fixtures import OperatorProcess


def test_cli_example_submit_wait_logs_list_describe_top_delete(
    cluster: Cluster,
    namespace: str,
    operator: OperatorProcess,
) -> None:
    submitted = cli(cluster, namespace, "submit", "-f", "examples/pytorch-ddp.yaml")
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.strip() == "trainingrun.runyard.dev/pytorch-ddp created"
    again = cli(cluster, namespace, "submit", "-f", "examples/pytorch-ddp.yaml")
    assert again.returncode == 5 and "already exists" in again.stderr
    waited = cli(cluster, namespace, "wait", "pytorch-ddp", "--for=Succeeded", "--timeout", "120")
    assert waited.returncode == 0, waited.stderr
    assert "pytorch-ddp Succeeded" in waited.stdout
    logs = cli(cluster, namespace, "logs", "pytorch-ddp")
    assert logs.returncode == 0, logs.stderr
    # The example ran for real on the real node: these are its ranks' own lines.
    assert "[node-0] rank 0: epoch 5/5" in logs.stdout and "[node-1] rank 1: epoch 5/5" in logs.stdout, logs.stdout
    assert "Traceback" not in logs.stderr
    listed = cli(cluster, namespace, "list", "-o", "json")
    assert listed.returncode == 0
    items = json.loads(listed.stdout)["items"]
    assert [(i["metadata"]["name"], i["status"]["phase"]) for i in items] == [("pytorch-ddp", "Succeeded")]
    table = cli(cluster, namespace, "list")
    assert table.stdout.splitlines()[1].split()[:3] == ["pytorch-ddp", "pytorch", "Succeeded"]
    described = cli(cluster, namespace, "describe", "pytorch-ddp")
    assert described.returncode == 0
    for text in ("Phase:       Succeeded", "Conditions:", "Succeeded  True", "Events:", "TrainingRun/pytorch-ddp"):
        assert text in described.stdout, described.stdout
    top = cli(cluster, namespace, "top", "--once")
    assert top.returncode == 0 and "pytorch-ddp" in top.stdout and "UTIL AVG" in top.stdout
    deleted = cli(cluster, namespace, "delete", "pytorch-ddp", "--wait")
    assert deleted.returncode == 0
    gone = cli(cluster, namespace, "get", "pytorch-ddp")
    assert gone.returncode == 3 and "not found" in gone.stderr
