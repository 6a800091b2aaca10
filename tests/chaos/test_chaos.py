"""Faults during work and hostile input against the real operator on the local control plane (kwok pods).

Aim, checked per scenario: 0 runs lost or wrongly terminal, 0 foreign objects touched, 0 operator crashes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client

from runyard import constants as c
from runyard.validation import validate_manifest
from tests.chaos.conftest import Outcome, scale
from tests.conftest import Cluster, localcluster
from tests.operator_fixtures import (
    OPERATOR_S3_ENV,
    OperatorProcess,
    Runs,
    session_operator_paused,
    training_run,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

FAIL_FIRST_137 = {"sim.runyard.dev/duration": "2s", "sim.runyard.dev/exit-code": "137"}


@pytest.fixture
def chaos_operator(cluster: Cluster, crd: None, tmp_path: Path, outcome: Outcome) -> Iterator[OperatorProcess]:
    """An operator only this test runs (the session's is paused), so the test may kill and restart it."""
    with session_operator_paused():
        proc = OperatorProcess(cluster.kubeconfig, tmp_path, env=OPERATOR_S3_ENV)
        proc.start()
        try:
            yield proc
        finally:
            proc.stop()
            logs = proc.logs()
            outcome.operator_crashes += logs.count("Traceback")
            assert "Traceback" not in logs, logs[logs.index("Traceback") - 500 :][:4000]


@pytest.fixture
def cruns(api: Any, namespace: str) -> Runs:
    return Runs(api, namespace)


def settle(runs: Runs, names: list[str], outcome: Outcome, want: str = "Succeeded", restarts: int | None = None,
           timeout: float = 300) -> None:  # fmt: skip
    """Wait for every run to end; count those that ended as they must, record the others as lost."""
    deadline = time.monotonic() + timeout
    pending = set(names)
    ended: dict[str, dict[str, Any]] = {}
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            try:
                status = runs.status(name)
            except client.ApiException as err:
                if err.status == 404:
                    ended[name] = {"phase": "<deleted>"}
                    pending.discard(name)
                continue
            if status.get("phase") in ("Succeeded", "Failed"):
                ended[name] = status
                pending.discard(name)
        time.sleep(1)
    for name in names:
        status = ended.get(name)
        ok = status is not None and status.get("phase") == want
        ok = ok and (restarts is None or status.get("restarts") == restarts)  # type: ignore[union-attr]
        if ok:
            outcome.handled += 1
        else:
            # Enough to tell the product's fault from the scenario's: the last failure and every restart's cause.
            shown = status and {k: status.get(k) for k in ("phase", "restarts", "message", "failure")}
            restarts_seen = [e.message for e in runs.events(name) if e.reason == "Restarting"]
            stuck = "" if status else f"; stuck: {stuck_state(runs, name)}"
            outcome.lost.append(f"{name}: {shown}; restarts: {restarts_seen}{stuck}")


def operator_complaints(operator: OperatorProcess, last: int = 60) -> str:
    """The operator's last warnings and errors: what it saw while runs stood still."""
    lines = operator.logs().splitlines()
    complaints = [line for line in lines if "WARNING" in line or "ERROR" in line][-last:]
    alive = operator.proc is not None and operator.proc.poll() is None
    return "\n".join([f"operator alive: {alive}", *complaints, "--- last lines:", *lines[-20:]])


def stuck_state(runs: Runs, name: str) -> str:
    """A run that never ended: where it stands, its Jobs and its pods, so a stall can be told apart from a slow run."""
    try:
        status = runs.status(name)
        jobs = [
            f"{j.metadata.name}(active={j.status.active}, failed={j.status.failed}, succeeded={j.status.succeeded}, "
            f"conditions={[(x.type, x.reason) for x in j.status.conditions or []]})"
            for j in runs.jobs(name)
        ]
        pods = [f"{p.metadata.name}:{p.status.phase}:{p.spec.node_name}" for p in runs.pods(name)]
    except client.ApiException as err:
        return f"unreadable ({err.status})"
    run = {k: status.get(k) for k in ("phase", "attempt", "restarts", "message", "observedGeneration")}
    return f"{run} jobs={jobs} pods={pods}"


def assert_one_gang_each(runs: Runs, names: list[str], outcome: Outcome) -> None:
    """No duplicates: at most one Job per role and one Service per run, whatever happened on the way."""
    jobs: dict[str, int] = {}
    for job in runs.batch.list_namespaced_job(runs.namespace).items:
        jobs[job.metadata.name] = jobs.get(job.metadata.name, 0) + 1
    services = [s.metadata.name for s in runs.core.list_namespaced_service(runs.namespace).items]
    for name in names:
        if services.count(name) > 1:
            outcome.lost.append(f"{name}: duplicate Services")


def test_operator_sigkill_during_failures_and_a_burst(cruns: Runs, chaos_operator: OperatorProcess,
                                                      outcome: Outcome) -> None:  # fmt: skip
    """Runs whose first attempt exits 137 while the operator is killed over and over: each restarts exactly once."""
    names = [f"kill-{i}" for i in range(scale(8, 120))]
    rng = random.Random(7)
    outcome.tried = len(names)
    for i, name in enumerate(names):
        cruns.create(training_run(name, replicas={"node": 2}, outcome="fail-first", sim=FAIL_FIRST_137,
                                  run_policy={"backoffLimit": 1, "backoffSeconds": 0}))  # fmt: skip
        if i in (len(names) // 3, 2 * len(names) // 3):
            chaos_operator.kill()
            time.sleep(rng.uniform(1, 4))  # failures land while no operator runs
            chaos_operator.start()
    for _ in range(2):
        time.sleep(rng.uniform(1, 3))
        chaos_operator.kill()
        time.sleep(rng.uniform(1, 4))
        chaos_operator.start()
    settle(cruns, names, outcome, restarts=1)
    assert_one_gang_each(cruns, names, outcome)
    assert outcome.lost == []


def test_apiserver_and_etcd_restarts_mid_run(cruns: Runs, chaos_operator: OperatorProcess, outcome: Outcome) -> None:
    names = [f"ha-{i}" for i in range(scale(6, 60))]
    outcome.tried = len(names)
    for name in names:
        cruns.create(training_run(name, replicas={"node": 2}, sim={**FAIL_FIRST_137, "sim.runyard.dev/duration": "8s"},
                                  outcome="fail-first", run_policy={"backoffLimit": 2, "backoffSeconds": 0}))  # fmt: skip
    wait_until(lambda: all(cruns.status(n).get("phase") for n in names), timeout=90, what="every run has a phase")
    localcluster.restart_component("kube-apiserver", pause=2)
    time.sleep(3)
    localcluster.restart_component("etcd", pause=2)
    # kwok (v0.8.0) drops a pod stage whose status patch failed while etcd was away and never retries it: the pod
    # would stay Running forever (a kubelet retries its status updates). A restarted kwok replays every pod's stage.
    localcluster.restart_component("kwok")
    settle(cruns, names, outcome, restarts=1)
    assert outcome.lost == [], operator_complaints(chaos_operator)


def test_two_operators_at_once(cruns: Runs, chaos_operator: OperatorProcess, cluster: Cluster, tmp_path: Path,
                               outcome: Outcome) -> None:  # fmt: skip
    """A second operator without leader election (a botched upgrade): no duplicates, one restart each, all converge."""
    second = OperatorProcess(cluster.kubeconfig, tmp_path / "second", env=OPERATOR_S3_ENV)
    (tmp_path / "second").mkdir()
    second.start()
    names = [f"twin-{i}" for i in range(scale(8, 80))]
    outcome.tried = len(names)
    try:
        for name in names:
            cruns.create(training_run(name, replicas={"node": 2}, outcome="fail-first", sim=FAIL_FIRST_137,
                                      run_policy={"backoffLimit": 1, "backoffSeconds": 0}))  # fmt: skip
        settle(cruns, names, outcome, restarts=1)
        assert_one_gang_each(cruns, names, outcome)
    finally:
        second.stop()
        outcome.operator_crashes += second.logs().count("Traceback")
    assert outcome.lost == [] and "Traceback" not in second.logs()


def test_pod_and_job_deletion_mid_run(cruns: Runs, chaos_operator: OperatorProcess, outcome: Outcome) -> None:
    names = [f"del-{i}" for i in range(scale(6, 60))]
    outcome.tried = len(names)
    rng = random.Random(11)
    # Long enough that every run still runs when its turn to lose a pod or its Job comes.
    duration = f"{scale(10, 60)}s"
    for name in names:
        cruns.create(training_run(name, replicas={"node": 2}, sim={"sim.runyard.dev/duration": duration},
                                  run_policy={"backoffLimit": 3, "backoffSeconds": 0}))  # fmt: skip
    wait_until(lambda: all(cruns.status(n).get("phase") == "Running" for n in names), timeout=180,
               what="every run Running")  # fmt: skip
    for name in names:
        if rng.random() < 0.5:
            pods = cruns.pods(name)
            if pods:
                cruns.core.delete_namespaced_pod(rng.choice(pods).metadata.name, cruns.namespace)
        else:
            try:
                cruns.batch.delete_namespaced_job(f"{name}-node", cruns.namespace, propagation_policy="Background")
            except client.ApiException as err:
                if err.status != 404:
                    raise
    settle(cruns, names, outcome)
    restarts = [cruns.status(n).get("restarts", 0) for n in names]
    assert outcome.lost == [] and all(1 <= r <= 3 for r in restarts), restarts


def test_foreign_objects_are_never_touched(cruns: Runs, chaos_operator: OperatorProcess, outcome: Outcome) -> None:
    """Runs named like existing Services, ConfigMaps and Jobs: refused by name, the objects stay exactly as they were."""
    names = [f"taken-{i}" for i in range(scale(6, 30))]
    outcome.tried = len(names)
    before: set[str] = set()
    for i, name in enumerate(names):
        if i % 3 == 0:
            obj = cruns.core.create_namespaced_service(cruns.namespace, {"metadata": {"name": name},
                                                                         "spec": {"clusterIP": "None"}})  # fmt: skip
        elif i % 3 == 1:
            obj = cruns.core.create_namespaced_config_map(cruns.namespace, {"metadata": {"name": f"{name}-mpi"}})
        else:
            obj = cruns.batch.create_namespaced_job(cruns.namespace, {
                "metadata": {"name": f"{name}-node"},
                "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never",
                                                                "containers": [{"name": "c", "image": "x"}]}}}})  # fmt: skip
        before.add(f"{obj.kind}/{obj.metadata.name}")
        framework = "mpi" if i % 3 == 1 else "pytorch"
        replicas = {"launcher": 1, "worker": 1} if framework == "mpi" else {"node": 1}
        cruns.create(training_run(name, framework, replicas))
    settle(cruns, names, outcome, want="Failed")
    for name in names:
        if (cruns.status(name).get("failure") or {}).get("reason") != "NameConflict":
            outcome.lost.append(f"{name}: not refused as a name conflict")
    after = {
        **{f"Service/{s.metadata.name}": s for s in cruns.core.list_namespaced_service(cruns.namespace).items},
        **{f"ConfigMap/{c.metadata.name}": c for c in cruns.core.list_namespaced_config_map(cruns.namespace).items},
        **{f"Job/{j.metadata.name}": j for j in cruns.batch.list_namespaced_job(cruns.namespace).items},
    }
    for key in before:
        # The Job controller updates a Job's status on its own: "touched" means the operator wrote to it (its field
        # manager in managedFields), owns it now, or it is gone.
        obj = after.get(key)
        managers = {m.manager for m in (obj.metadata.managed_fields or [])} if obj is not None else set()
        if obj is None or obj.metadata.owner_references or c.FIELD_MANAGER in managers:
            outcome.foreign_touched.append(key)
    assert outcome.foreign_touched == [] and outcome.lost == []


# --- fuzz: hypothesis-generated specs through the API server (dry-run) and the operator ---------------------------

quantities = st.one_of(st.sampled_from(["1", "500m", "-1", "1Gi", "0", "lots", "1e3", "+2"]), st.integers(-2, 64))
env_entries = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["A", "RANK", "RUNYARD_ROLE", "B", "x y"])},
        optional={
            "value": st.text(max_size=5),
            "valueFrom": st.sampled_from([{}, {"fieldRef": {"fieldPath": "metadata.name"}},
                                          {"fieldRef": {"fieldPath": "x"}, "secretKeyRef": {"name": "s", "key": "k"}}]),
        },
    ),
    max_size=3,
)  # fmt: skip
specs = st.fixed_dictionaries(
    {
        "framework": st.sampled_from(["pytorch", "jax", "generic", "mpi", "tensorflow", "caffe"]),
        "image": st.sampled_from(["i", "", "localhost/x:1"]),
        "replicas": st.dictionaries(
            st.sampled_from(["node", "worker", "launcher", "chief", "ps"]),
            st.fixed_dictionaries({}, optional={"replicas": st.integers(-1, 3),
                                                "resources": st.fixed_dictionaries({}, optional={
                                                    "cpu": quantities, "memory": quantities, "gpus": st.integers(-1, 9)})}),
            max_size=3,
        ),
    },
    optional={
        "env": env_entries,
        "envFrom": st.sampled_from([[{"prefix": "P"}], [{"secretRef": {"name": "s"}}]]),
        "tolerations": st.sampled_from([[{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}],
                                        [{"key": "k", "operator": "Exists"}]]),
        "volumeMounts": st.sampled_from([[{"name": "data", "mountPath": "/d"}]]),
        "nprocPerNode": st.sampled_from([0, 1, "auto", "many"]),
        "runPolicy": st.fixed_dictionaries({}, optional={"backoffLimit": st.integers(-1, 2),
                                                         "startTimeoutSeconds": st.integers(0, 30)}),
    },
)  # fmt: skip


def test_fuzzed_specs_the_sdk_and_the_api_server_agree_and_the_operator_survives(
    cruns: Runs, chaos_operator: OperatorProcess, outcome: Outcome
) -> None:
    """For every generated spec, `runyard validate` and the CRD (server-side dry-run) agree; accepted ones are
    created, and each gets a phase from the operator (none stays without status, the operator never crashes)."""
    accepted: list[str] = []
    disagreements: list[str] = []
    counter = iter(range(10**6))

    @settings(max_examples=scale(40, 400), deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(spec=specs)
    def check(spec: dict[str, Any]) -> None:
        name = f"fz-{next(counter)}"
        manifest = {"apiVersion": "runyard.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": name},
                    "spec": {**spec, "podTemplate": {"metadata": {"annotations": {"sim.runyard.dev/duration": "1s"}}}}}  # fmt: skip
        sdk_ok = validate_manifest(manifest) == []
        try:
            cruns.api.create_namespaced_custom_object(
                "runyard.dev", "v1alpha1", cruns.namespace, "trainingruns", manifest, dry_run="All"
            )
            api_ok = True
        except client.ApiException as err:
            api_ok = False
            assert err.status in (400, 422), err
        outcome.tried += 1
        if sdk_ok != api_ok:
            disagreements.append(
                f"{spec}: sdk {'accepts' if sdk_ok else 'rejects'}, API {'accepts' if api_ok else 'rejects'}"
            )
        elif api_ok and len(accepted) < scale(10, 60):
            cruns.create(manifest)
            accepted.append(name)
        else:
            outcome.handled += 1

    check()
    wait_until(lambda: all(cruns.status(n).get("phase") for n in accepted), timeout=120,
               what="a phase for every accepted run")  # fmt: skip
    outcome.handled += len(accepted)
    outcome.lost += disagreements
    assert chaos_operator.proc is not None and chaos_operator.proc.poll() is None
    assert disagreements == []
