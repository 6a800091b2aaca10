"""Progress reports end to end on the local control plane: pod-bound tokens reviewed by the real API server,
status.progress paced to one write per interval, the PROGRESS and ETA columns, and every forged report refused.

kwok pods run no code, so the test reports for them the way a rank would: with a token the API server issues bound to
the pod (TokenRequest, audience runyard.dev/progress), exactly what the kubelet projects into a real pod.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch

from runyard import constants as c
from tests.cluster.conftest import OperatorProcess, Runs, training_run, wait_until
from tests.conftest import Cluster
from tests.operator_fixtures import free_port

pytestmark = pytest.mark.slow

WRITE_INTERVAL = 20.0


@pytest.fixture
def progress_operator(
    cluster: Cluster, api: Any, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> Iterator[tuple[Runs, str]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}{c.PROGRESS_PATH}"
    config = {"progress": {"url": url, "port": port, "writeIntervalSeconds": WRITE_INTERVAL}}
    path = tmp_path / "operator.yaml"
    path.write_text(yaml.safe_dump(config))
    operator.stop()  # one operator at a time: the session's (no progress endpoint) steps aside
    proc = OperatorProcess(cluster.kubeconfig, tmp_path, extra_args=["--config", str(path), "--namespace", namespace])
    try:
        proc.start()
        yield Runs(api, namespace), url
    finally:
        proc.stop()
        operator.start()


def pod_token(api: Any, namespace: str, pod: client.V1Pod, audience: str = c.PROGRESS_AUDIENCE) -> str:
    """What the kubelet projects into the pod: a token of its ServiceAccount, bound to it, for our audience."""
    core = client.CoreV1Api(api)
    account = pod.spec.service_account_name or "default"
    wait_until(lambda: _has_account(core, namespace, account), timeout=60, what=f"ServiceAccount {account}")
    spec = client.V1TokenRequestSpec(
        audiences=[audience],
        expiration_seconds=600,
        bound_object_ref=client.V1BoundObjectReference(
            api_version="v1", kind="Pod", name=pod.metadata.name, uid=pod.metadata.uid
        ),
    )
    answer = core.create_namespaced_service_account_token(
        account, namespace, client.AuthenticationV1TokenRequest(spec=spec)
    )
    return str(answer.status.token)


def _has_account(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    try:
        core.read_namespaced_service_account(name, namespace)
        return True
    except client.ApiException:
        return False


def post(url: str, body: Any, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, {}
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read() or b"{}")


def running_pods(runs: Runs, name: str, count: int) -> list[client.V1Pod]:
    def ready() -> list[client.V1Pod] | None:
        pods = [x for x in runs.pods(name) if x.status.phase == "Running"]
        return pods if len(pods) >= count else None

    found: list[client.V1Pod] = wait_until(ready, timeout=120, what=f"{count} running pods of {name}")
    return found


def test_reports_become_paced_status_progress_and_columns(progress_operator: tuple[Runs, str], api: Any,
                                                          cluster: Cluster) -> None:  # fmt: skip
    runs, url = progress_operator
    runs.create(training_run("prog", replicas={"node": 2}, sim={"sim.runyard.dev/duration": "600s"}))
    pods = sorted(running_pods(runs, "prog", 2), key=lambda p: p.metadata.name)
    job = client.BatchV1Api(api).read_namespaced_job(pods[0].metadata.owner_references[0].name, runs.namespace)
    template = job.spec.template.spec
    # What the pods were given: the endpoint and a projected, pod-bound token for our audience only.
    env = {e.name: e.value for e in template.containers[0].env}
    assert env[c.ENV_PROGRESS_URL] == url
    (volume,) = [v for v in template.volumes if v.name == c.PROGRESS_VOLUME]
    assert volume.projected.sources[0].service_account_token.audience == c.PROGRESS_AUDIENCE

    tokens = [pod_token(api, runs.namespace, p) for p in pods]
    # Watch the run's writes from here on: each status.progress a write carried.
    core = client.CustomObjectsApi(api)
    rv = runs.get("prog")["metadata"]["resourceVersion"]
    started = time.monotonic()
    assert post(url, {"step": 100, "total": 1000, "rank": 0}, tokens[0])[0] == 204  # written at once
    assert post(url, {"step": 150, "rank": 1}, tokens[1])[0] == 204
    assert post(url, {"step": 200, "rank": 0}, tokens[0])[0] == 204  # paced: one deferred write carries it
    quick = time.monotonic() - started
    written: list[int] = []
    stream = watch.Watch()
    for event in stream.stream(core.list_namespaced_custom_object, c.GROUP, c.VERSION, runs.namespace, c.PLURAL,
                               field_selector="metadata.name=prog", resource_version=rv,
                               timeout_seconds=int(WRITE_INTERVAL * 4)):  # fmt: skip
        progress = (event["object"].get("status") or {}).get("progress") or {}
        if progress and (not written or progress["step"] != written[-1]):
            written.append(progress["step"])
        if written and written[-1] == 200:
            stream.stop()
    if quick < WRITE_INTERVAL:  # the three reports landed inside one interval: two writes, the middle one folded in
        assert written == [100, 200], written
    assert written[-1] == 200

    progress = runs.status("prog")["progress"]
    assert progress["totalSteps"] == 1000 and progress["percent"] == 20 and progress["reportingRanks"] == 2
    assert progress["summary"] == "20%(200/1000)" and progress["attempt"] == 0
    table = cluster.kubectl("get", "trainingrun", "prog", "-n", runs.namespace).stdout
    assert "PROGRESS" in table and "ETA" in table and "20%(200/1000)" in table


def test_forged_or_foreign_reports_are_refused(progress_operator: tuple[Runs, str], api: Any) -> None:
    runs, url = progress_operator
    runs.create(training_run("victim", replicas={"node": 1}, sim={"sim.runyard.dev/duration": "600s"}))
    (pod,) = running_pods(runs, "victim", 1)
    uid = runs.get("victim")["metadata"]["uid"]
    core = client.CoreV1Api(api)
    # A pod the attacker controls, labelled as if it were the victim's replica (labels are not ownership).
    impostor = core.create_namespaced_pod(runs.namespace, client.V1Pod(
        metadata=client.V1ObjectMeta(name="impostor", labels={c.LABEL_RUN_UID: uid, c.LABEL_MANAGED_BY: c.MANAGED_BY_VALUE,
                                                              c.LABEL_ROLE: "node"}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="x")]),
    ))  # fmt: skip
    wait_until(lambda: _has_account(core, runs.namespace, "default"), timeout=60, what="default ServiceAccount")

    assert post(url, {"step": 1}, None)[0] == 401
    assert post(url, {"step": 1}, "not-a-token-at-all")[0] == 401
    wrong_audience = pod_token(api, runs.namespace, pod, audience="https://kubernetes.default.svc.cluster.local")
    assert post(url, {"step": 1}, wrong_audience)[0] == 401
    status, body = post(url, {"step": 1}, pod_token(api, runs.namespace, impostor))
    assert status == 403 and "not a replica" in body["error"]
    status, body = post(url, {"step": -5}, pod_token(api, runs.namespace, pod))
    assert status == 400 and "step" in body["error"]
    # Nothing of the above reached the victim's status; its own pod's report does.
    assert "progress" not in runs.status("victim")
    assert post(url, {"step": 7}, pod_token(api, runs.namespace, pod))[0] == 204
    assert wait_until(lambda: runs.status("victim").get("progress"), timeout=60, what="progress")["step"] == 7


def index_of(pod: client.V1Pod) -> int:
    return int(pod.metadata.annotations[c.ANNOTATION_JOB_COMPLETION_INDEX])


def test_a_silent_rank_stalls_the_run_and_restart_on_stall_restarts_the_gang(
    progress_operator: tuple[Runs, str], api: Any
) -> None:
    """The NCCL-hang case: every rank reported, then rank 1 goes quiet while its pod still runs."""
    runs, url = progress_operator
    policy = {"stallTimeoutSeconds": 30, "backoffLimit": 1, "backoffSeconds": 0}
    sim = {"sim.runyard.dev/duration": "600s"}
    runs.create(training_run("hang", replicas={"node": 2}, sim=sim, run_policy={**policy, "restartOnStall": True}))
    runs.create(training_run("quiet", replicas={"node": 2}, sim=sim, run_policy=policy))
    pods = {name: sorted(running_pods(runs, name, 2), key=index_of) for name in ("hang", "quiet")}
    tokens = {name: [pod_token(api, runs.namespace, p) for p in pods[name]] for name in pods}
    for name in pods:
        for rank, token in enumerate(tokens[name]):
            assert post(url, {"step": 1, "rank": rank}, token)[0] == 204

    def beat() -> None:  # rank 0 keeps reporting; rank 1 is silent
        for name in pods:
            post(url, {"step": int(time.time()), "rank": 0}, tokens[name][0])

    def stalled(name: str) -> dict[str, Any] | None:
        beat()
        found = [x for x in runs.status(name).get("conditions") or [] if x["type"] == "Stalled"]
        return found[0] if found and found[0]["status"] == "True" else None

    quiet = wait_until(lambda: stalled("quiet"), timeout=120, what="quiet Stalled=True")
    silent_pod = pods["quiet"][1]
    assert quiet["reason"] == "NoProgress"
    assert f"rank 1 ({silent_pod.metadata.name} on {silent_pod.spec.node_name})" in quiet["message"]
    (silent,) = runs.status("quiet")["progress"]["silentRanks"]
    # `kubectl get tr` (PROGRESS, ETA) says it too: no end time is promised for a stalled run.
    assert runs.status("quiet")["progress"]["summary"].endswith(" stalled (1 silent)")
    assert "remaining" not in runs.status("quiet")["progress"]
    assert (silent["rank"], silent["pod"]) == (1, silent_pod.metadata.name)
    assert runs.status("quiet")["phase"] == "Running"  # no restartOnStall: it only says so

    # restartOnStall: the gang restarts with a failure of category Stalled naming the silent rank.
    def restarted() -> dict[str, Any] | None:
        beat()
        status = runs.status("hang")
        return status if status.get("restarts") == 1 else None

    status = wait_until(restarted, timeout=120, what="hang restarted")
    failure = status["failure"]
    assert (failure["category"], failure["reason"], failure["rank"]) == ("Stalled", "Stalled", 1)
    assert failure["pod"] == pods["hang"][1].metadata.name and "no progress report for 30s" in failure["message"]

    # The silent rank of the other run speaks again (and keeps speaking): Stalled clears at once (not paced).
    spoke = time.monotonic()

    def cleared() -> dict[str, Any] | None:
        post(url, {"step": int(time.time()), "rank": 1}, tokens["quiet"][1])
        status = runs.status("quiet")
        found = [k for k in status["conditions"] if k["type"] == "Stalled"]
        return status if found and found[0]["status"] == "False" else None

    status = wait_until(cleared, timeout=60, what="Stalled=False")
    assert "silentRanks" not in status["progress"], status["progress"]
    assert "stalled" not in status["progress"]["summary"], status["progress"]
    assert time.monotonic() - spoke < 20, "Stalled should clear with the rank's first report, not a paced write"
