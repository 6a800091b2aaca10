"""The Controller against an in-memory API (FakeKube): children, phases, gang restarts, refusals, MPI, status writes.

Watch events reach the controller as kopf delivers them (handlers.py); the tests play the Job controller and the
kubelet by creating and changing pods and Jobs with the shapes the API server gives them.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runyard import constants as c
from runyard.api import TrainingRun
from runyard_operator.controller import Controller
from runyard_operator.plugins import PluginContext, RunPlugin
from runyard_operator.policies import conditions as cond
from runyard_operator.policies import lifecycle as lc
from runyard_operator.timestamps import format_time
from tests.unit.operator.fake_kube import FakeKube

NS = "team"
SSH_KEYS = ("-----BEGIN OPENSSH PRIVATE KEY-----\ntest\n-----END OPENSSH PRIVATE KEY-----\n", "ssh-ed25519 AAAA test")


def ago(seconds: float = 0.0) -> str:
    """A time as the kubelet stamps it; real time, since the API server stamps creationTimestamp with it."""
    return format_time(datetime.now(UTC) - timedelta(seconds=seconds))


def training_run(
    name: str, framework: str = "pytorch", replicas: dict[str, int] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": c.API_VERSION,
        "kind": c.KIND,
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "framework": framework,
            "image": "ghcr.io/runyard/examples:0.1.0",
            "command": ["python", "train.py"],
            "replicas": {role: {"replicas": n} for role, n in (replicas or {"node": 2}).items()},
            **spec,
        },
    }


class Harness:
    """A FakeKube wired to a Controller as handlers.py wires kopf: every change is a watch event for the caches."""

    def __init__(self, plugins: Sequence[RunPlugin] = (), coalesce_seconds: float = 0.0) -> None:
        self.kube = FakeKube()
        self.controller = Controller(
            self.kube,  # type: ignore[arg-type]
            plugins,
            ssh_keygen=lambda: SSH_KEYS,
            coalesce_seconds=coalesce_seconds,
        )
        self.kube.watchers.append(self._deliver)

    def _deliver(self, event: str, kind: str, body: dict[str, Any]) -> None:
        if kind == c.KIND:
            self.controller.on_run_event(event, body)
        elif kind in ("Job", "Pod") and body["metadata"].get("labels", {}).get(c.LABEL_MANAGED_BY):
            self.controller.on_child_event(kind, event, body)
        elif kind == "Event" and (body.get("reason"), body.get("involvedObject", {}).get("kind")) == (
            lc.REASON_FAILED_CREATE,
            "Job",
        ):  # what the field-selected watch delivers (handlers.REFUSAL_SELECTOR)
            self.controller.on_refusal_event(event, body)

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.kube.put(body)

    async def reconcile(self, name: str) -> dict[str, Any]:
        """One reconcile, as a work-queue worker runs it; it must not have failed. Returns the run's status."""
        await self.controller.reconcile((NS, name))
        assert not self.controller._failures, "the reconcile failed (see the log)"
        return self.status(name)

    def status(self, name: str) -> dict[str, Any]:
        run = self.kube.get_object(c.KIND, NS, name)
        assert run is not None
        return dict(run.get("status") or {})

    def job(self, name: str) -> dict[str, Any]:
        job = self.kube.get_object("Job", NS, name)
        assert job is not None, f"no Job {name}"
        return job

    # --- the Job controller and the kubelet ------------------------------------------------------------

    def start_pods(self, job_name: str, count: int) -> list[str]:
        """The Job controller creates the indexed pods, the scheduler binds them, the kubelet runs them."""
        job = self.job(job_name)
        started = ago(1)
        template = job["spec"]["template"]
        names = []
        for index in range(count):
            meta = copy.deepcopy(template["metadata"])
            meta["labels"] |= {"job-name": job_name, "batch.kubernetes.io/controller-uid": job["metadata"]["uid"]}
            meta["annotations"] = meta.get("annotations", {}) | {c.ANNOTATION_JOB_COMPLETION_INDEX: str(index)}
            pod = self.kube.put(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": meta
                    | {
                        "generateName": f"{job_name}-{index}-",
                        "namespace": NS,
                        "ownerReferences": [
                            {
                                "apiVersion": "batch/v1",
                                "kind": "Job",
                                "name": job_name,
                                "uid": job["metadata"]["uid"],
                                "controller": True,
                                "blockOwnerDeletion": True,
                            }
                        ],
                    },
                    "spec": template["spec"] | {"nodeName": f"node-{index}"},
                    "status": {
                        "phase": "Running",
                        "startTime": started,
                        "conditions": [
                            {"type": "PodScheduled", "status": "True"},
                            {"type": "Ready", "status": "True"},
                        ],
                        "containerStatuses": [
                            {"name": c.CONTAINER_NAME, "ready": True, "state": {"running": {"startedAt": started}}}
                        ],
                    },
                }
            )
            names.append(pod["metadata"]["name"])
        self.kube.mutate("Job", NS, job_name, {"status": {"active": count, "ready": count}})
        return names

    def end_pod(self, name: str, exit_code: int, reason: str = "Error") -> None:
        terminated = {"exitCode": exit_code, "reason": reason, "finishedAt": ago(), "message": reason}
        self.kube.mutate(
            "Pod",
            NS,
            name,
            {
                "status": {
                    "phase": "Succeeded" if exit_code == 0 else "Failed",
                    "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "False"}],
                    "containerStatuses": [
                        {"name": c.CONTAINER_NAME, "ready": False, "state": {"terminated": terminated}}
                    ],
                }
            },
        )

    def complete_job(self, job_name: str, succeeded: int) -> None:
        conditions = [
            {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached"},
            {"type": "Complete", "status": "True", "reason": "CompletionsReached"},
        ]
        self.kube.mutate(
            "Job", NS, job_name, {"status": {"active": 0, "succeeded": succeeded, "conditions": conditions}}
        )

    def pods_of(self, job_name: str) -> list[str]:
        return [
            p["metadata"]["name"] for p in self.kube.of_kind("Pod") if p["metadata"]["labels"]["job-name"] == job_name
        ]


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def test_create_to_running_to_succeeded() -> None:
    async def scenario() -> None:
        h = Harness()
        await h.create(training_run("llm"))
        status = await h.reconcile("llm")
        assert (status["phase"], status["restarts"], status["totalReplicas"]) == ("Pending", 0, 2)
        service, job = h.kube.get_object("Service", NS, "llm"), h.job("llm-node")
        run_uid = h.kube.objects[(c.KIND, NS, "llm")]["metadata"]["uid"]
        for child in (service, job):
            assert child is not None
            (owner,) = child["metadata"]["ownerReferences"]
            assert (owner["kind"], owner["uid"], owner["controller"]) == (c.KIND, run_uid, True)
        assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 2

        pods = h.start_pods("llm-node", 2)
        status = await h.reconcile("llm")
        assert status["phase"] == "Running" and status["readyReplicas"] == 2
        assert status["nodes"] == ["node-0", "node-1"] and status["startTime"]
        running = cond.find(status["conditions"], "Running")
        assert running is not None and running["status"] == "True" and running["observedGeneration"] == 1

        for pod in pods:
            h.end_pod(pod, 0, "Completed")
        h.complete_job("llm-node", 2)
        status = await h.reconcile("llm")
        assert status["phase"] == "Succeeded" and status["completionTime"] and status["gpus"] == 0
        assert [(t, r) for _, t, r, _ in h.kube.events] == [("Normal", "Running"), ("Normal", "Succeeded")]
        # An end is confirmed from the API (a fresh list of the run's Jobs and pods), not the caches alone.
        assert ("LIST", "Pod", NS, "") in h.kube.calls
        # Nothing more to do: the next reconcile neither writes nor creates.
        before = len(h.kube.calls)
        await h.reconcile("llm")
        assert h.kube.calls[before:] == []

    run(scenario)


def test_a_watched_failed_create_event_names_the_refusal_without_listing_events() -> None:
    async def scenario() -> None:
        h = Harness()
        await h.create(training_run("quota"))
        await h.reconcile("quota")
        job = h.job("quota-node")
        h.controller.queue._queued.clear()  # what earlier watch events queued (this harness reconciles by hand)
        h.kube.put(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": "quota-node.1", "namespace": NS},
                "involvedObject": {"kind": "Job", "name": "quota-node", "uid": job["metadata"]["uid"]},
                "reason": lc.REASON_FAILED_CREATE,
                "message": 'pods "quota-node-0" is forbidden: exceeded quota: pods',
                "lastTimestamp": ago(0),
            }
        )
        assert (NS, "quota") in h.controller.queue._queued  # the Event wakes the run that owns the Job
        before = len(h.kube.calls)
        status = await h.reconcile("quota")
        assert status["phase"] == "Pending" and "exceeded quota: pods" in status["message"]
        # Waiting is decided from the watched Event; no list of the namespace's Events (no watch cache behind it).
        assert not [call for call in h.kube.calls[before:] if call[:2] == ("LIST", "Event")]
        assert job["metadata"]["uid"] in h.controller.cache.refused
        h.controller.on_child_event("Job", "DELETED", job)
        assert job["metadata"]["uid"] not in h.controller.cache.refused  # forgotten with its Job

    run(scenario)


def test_exit_137_restarts_the_whole_gang_once() -> None:
    async def scenario() -> None:
        h = Harness()
        await h.create(training_run("oom", runPolicy={"backoffLimit": 2, "backoffSeconds": 0}))
        await h.reconcile("oom")
        first = h.start_pods("oom-node", 2)
        await h.reconcile("oom")
        old_uid = h.job("oom-node")["metadata"]["uid"]

        h.end_pod(first[1], 137, "OOMKilled")
        status = await h.reconcile("oom")
        assert (status["phase"], status["restarts"]) == ("Restarting", 1)
        failure = status["failure"]
        assert (failure["index"], failure["exitCode"], failure["reason"]) == (1, 137, "OOMKilled")
        # The whole gang goes (foreground, so the next attempt waits for the old pods), not just the failed rank.
        assert ("DELETE", "Job", NS, "oom-node") in h.kube.calls
        assert h.kube.of_kind("Pod") == []

        status = await h.reconcile("oom")
        job = h.job("oom-node")
        assert job["metadata"]["uid"] != old_uid and job["metadata"]["labels"][c.LABEL_RESTART_ATTEMPT] == "1"
        assert status["phase"] == "Pending" and status["restarts"] == 1
        second = h.start_pods("oom-node", 2)
        assert (await h.reconcile("oom"))["phase"] == "Running"
        for pod in second:
            h.end_pod(pod, 0, "Completed")
        status = await h.reconcile("oom")
        assert (status["phase"], status["restarts"]) == ("Succeeded", 1)
        assert [r for _, _, r, _ in h.kube.events] == ["Running", "Restarting", "Running", "Succeeded"]

    run(scenario)


def test_a_preempted_gang_is_replaced_in_the_same_attempt_and_runs_again() -> None:
    async def scenario() -> None:
        h = Harness()
        await h.create(training_run("low", queueName="team"))
        assert (await h.reconcile("low"))["phase"] == "Pending"
        assert h.job("low-node")["spec"]["suspend"] is True  # created suspended: admission is Kueue's
        assert (await h.reconcile("low"))["phase"] == "Queued"
        h.kube.mutate("Job", NS, "low-node", {"spec": {"suspend": False}})  # Kueue admits
        pods = h.start_pods("low-node", 2)
        assert (await h.reconcile("low"))["phase"] == "Running"
        old_uid = h.job("low-node")["metadata"]["uid"]

        # Kueue preempts: the Job is suspended, its pods get SIGTERM, torchrun exits 1, the podFailurePolicy fails it.
        suspended_at = ago(2)
        h.kube.mutate("Job", NS, "low-node", {"spec": {"suspend": True}})
        for pod in pods:
            h.kube.mutate("Pod", NS, pod, {"metadata": {"deletionTimestamp": suspended_at}})
            h.end_pod(pod, 1)
        failed = {"type": "Failed", "status": "True", "reason": "PodFailurePolicy", "lastTransitionTime": ago(),
                  "message": f"Container trainer for pod {NS}/{pods[0]} failed with exit code 1 matching FailJob rule"}  # fmt: skip
        conditions = [{"type": "Suspended", "status": "True", "lastTransitionTime": suspended_at}, failed]
        h.kube.mutate("Job", NS, "low-node", {"status": {"active": 0, "failed": 2, "conditions": conditions}})
        status = await h.reconcile("low")
        assert (status["phase"], status["restarts"]) == ("Suspended", 0) and "failure" not in status, status
        assert status["stopped"]["reason"] == "Preempted" and status["message"].startswith(
            "preempted: Kueue queue team"
        )
        assert ("DELETE", "Job", NS, "low-node") in h.kube.calls

        status = await h.reconcile("low")
        job = h.job("low-node")
        assert job["metadata"]["uid"] != old_uid and job["metadata"]["labels"][c.LABEL_RESTART_ATTEMPT] == "0"
        assert job["spec"]["suspend"] is True and status["phase"] == "Suspended" and status["restarts"] == 0
        h.kube.mutate("Job", NS, "low-node", {"spec": {"suspend": False}})  # admitted again
        h.start_pods("low-node", 2)
        status = await h.reconcile("low")
        assert status["phase"] == "Running" and "stopped" not in status and status["restarts"] == 0
        assert [r for _, _, r, _ in h.kube.events] == ["Running", "Suspended", "Running"]

    run(scenario)


def test_a_late_event_of_the_previous_attempts_job_does_not_hide_the_current_one() -> None:
    """Jobs of successive attempts share a name: the old one's delayed watch events (a reconnecting watch after an
    apiserver restart) must neither replace nor remove the new one in the cache, nor cost another restart."""

    async def scenario() -> None:
        h = Harness()
        await h.create(training_run("late", runPolicy={"backoffLimit": 3, "backoffSeconds": 0}))
        await h.reconcile("late")
        first = h.start_pods("late-node", 2)
        await h.reconcile("late")
        old_job = copy.deepcopy(h.job("late-node"))
        h.end_pod(first[0], 137, "OOMKilled")
        assert (await h.reconcile("late"))["restarts"] == 1
        await h.reconcile("late")
        new_uid = h.job("late-node")["metadata"]["uid"]
        h.start_pods("late-node", 2)
        assert (await h.reconcile("late"))["phase"] == "Running"

        stale = copy.deepcopy(old_job)
        stale["metadata"]["deletionTimestamp"] = ago()
        h.controller.on_child_event("Job", "MODIFIED", stale)
        h.controller.on_child_event("Job", "DELETED", stale)
        uid = h.job("late-node")["metadata"]["labels"][c.LABEL_RUN_UID]
        assert h.controller.cache.jobs[uid]["late-node"].uid == new_uid
        status = await h.reconcile("late")
        assert (status["phase"], status["restarts"]) == ("Running", 1)
        assert h.job("late-node")["metadata"]["uid"] == new_uid

    run(scenario)


def test_a_deleted_job_the_watch_never_reported_does_not_hold_the_restart_forever() -> None:
    """A watch that relists after an apiserver restart never reports what was deleted meanwhile: the old Job can stay
    in the cache. Past a few seconds of waiting the run's children are read from the API and the restart goes on."""

    async def scenario() -> None:
        h = Harness()
        await h.create(training_run("ghost", runPolicy={"backoffLimit": 2, "backoffSeconds": 0}))
        await h.reconcile("ghost")
        first = h.start_pods("ghost-node", 2)
        await h.reconcile("ghost")
        old_job = copy.deepcopy(h.job("ghost-node"))
        h.end_pod(first[0], 137, "OOMKilled")
        assert (await h.reconcile("ghost"))["phase"] == "Restarting"
        assert h.kube.get_object("Job", NS, "ghost-node") is None
        # The DELETED event was lost: the cache still holds the old Job, as it last saw it (being deleted).
        old_job["metadata"]["deletionTimestamp"] = ago()
        h.controller.on_child_event("Job", "MODIFIED", old_job)
        status = await h.reconcile("ghost")
        assert status["message"] == "waiting for the previous replicas to be removed"
        # Seconds later (the Restarting transition is older than the confirmation delay), the API is asked.
        restarting = [dict(x) for x in status["conditions"]]
        for x in restarting:
            if x["type"] == "Restarting":
                x["lastTransitionTime"] = ago(30)
        h.kube.mutate(c.KIND, NS, "ghost", {"status": {"conditions": restarting}})
        status = await h.reconcile("ghost")
        assert ("LIST", "Job", NS, "") in h.kube.calls
        assert h.job("ghost-node")["metadata"]["labels"][c.LABEL_RESTART_ATTEMPT] == "1"
        assert (status["phase"], status["restarts"]) == ("Pending", 1)

    run(scenario)


def test_a_foreign_service_of_the_same_name_refuses_the_run_and_is_not_adopted() -> None:
    async def scenario() -> None:
        h = Harness()
        theirs = h.kube.put(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "namespace": NS, "labels": {"app": "web"}},
                "spec": {"ports": [{"port": 80}]},
            }
        )
        await h.create(training_run("web"))
        status = await h.reconcile("web")
        assert status["phase"] == "Failed" and status["failure"]["reason"] == "NameConflict"
        assert "Service team/web already exists" in status["message"]
        assert h.kube.of_kind("Job") == []  # refused before any replica exists
        assert h.kube.get_object("Service", NS, "web") == theirs  # untouched: no owner reference, same version
        assert not [call for call in h.kube.calls if call[1] == "Service" and call[0] in ("PATCH", "DELETE")]
        assert [(t, r) for _, t, r, _ in h.kube.events] == [("Warning", "NameConflict")]
        # Terminal: the next reconcile neither retries the create nor rewrites the status.
        before = len(h.kube.calls)
        await h.reconcile("web")
        assert h.kube.calls[before:] == []

    run(scenario)


def test_an_mpi_run_records_its_generated_ssh_secret() -> None:
    async def scenario() -> None:
        h = Harness()
        await h.create(training_run("allreduce", "mpi", {"launcher": 1, "worker": 2}))
        status = await h.reconcile("allreduce")
        (secret,) = h.kube.of_kind("Secret")
        name = secret["metadata"]["name"]
        assert name.startswith("allreduce-mpi-ssh-") and status["sshSecret"] == name
        assert secret["metadata"]["ownerReferences"][0]["kind"] == c.KIND
        for role in ("launcher", "worker"):
            volumes = h.job(f"allreduce-{role}")["spec"]["template"]["spec"]["volumes"]
            assert name in [v.get("secret", {}).get("secretName") for v in volumes]
        await h.reconcile("allreduce")
        assert len(h.kube.of_kind("Secret")) == 1  # the recorded one is reused, never a second

    run(scenario)


def test_one_status_write_per_change() -> None:
    async def scenario() -> None:
        h = Harness()
        await h.create(training_run("quiet"))
        await h.reconcile("quiet")
        assert len(h.kube.status_writes("quiet")) == 1
        for _ in range(3):
            await h.reconcile("quiet")
        # A change the status does not depend on (a label) is a watch event, but no write.
        h.kube.mutate(c.KIND, NS, "quiet", {"metadata": {"labels": {"touched": "yes"}}})
        await h.reconcile("quiet")
        assert len(h.kube.status_writes("quiet")) == 1
        h.start_pods("quiet-node", 2)
        await h.reconcile("quiet")
        await h.reconcile("quiet")
        writes = h.kube.status_writes("quiet")
        assert len(writes) == 2 and writes[1]["phase"] == "Running"
        assert "totalReplicas" not in writes[1]  # a merge patch of what changed, not the whole status

    run(scenario)


class Contributor(RunPlugin):
    """A plugin that only contributes status, as the GPU plugin does from its sampling loop."""

    name = "contributor"

    def __init__(self, final: dict[str, Any] | None = None) -> None:
        self.ctx: PluginContext | None = None
        self.final = final or {}

    async def start(self, ctx: PluginContext) -> None:
        self.ctx = ctx

    async def finished(self, run: TrainingRun, status: Any) -> dict[str, Any]:
        return dict(self.final)


def idle(status: str, now: str = "2026-11-26T12:03:00Z") -> dict[str, Any]:
    from runyard_operator.timestamps import parse_time

    moment = parse_time(now)
    assert moment is not None
    return cond.condition("GPUsIdle", status, "LowUtilization" if status == "True" else "GPUsActive", "", 1, moment)


def test_plugin_contributions_go_into_the_controllers_one_write() -> None:
    async def scenario() -> None:
        plugin = Contributor(final={"gpu": {"gpuHours": 2.0, "final": True}})
        h = Harness([plugin], coalesce_seconds=30)
        await h.controller.start_plugins()
        assert plugin.ctx is not None
        await h.create(training_run("busy"))
        await h.reconcile("busy")
        key, uid = (NS, "busy"), h.kube.objects[(c.KIND, NS, "busy")]["metadata"]["uid"]
        pods = h.start_pods("busy-node", 2)
        await h.reconcile("busy")
        writes = len(h.kube.status_writes("busy"))
        assert h.kube.status_writes("busy")[-1]["phase"] == "Running"  # a start is written at once
        unready = {"conditions": [{"type": "Ready", "status": "False"}], "containerStatuses": [{"name": c.CONTAINER_NAME, "ready": False, "state": {"running": {"startedAt": ago(1)}}}]}  # fmt: skip
        h.kube.mutate("Pod", NS, pods[1], {"status": unready})  # quiet progress (a count) waits: coalesced
        await h.reconcile("busy")
        assert len(h.kube.status_writes("busy")) == writes

        # The plugin contributes while the lifecycle has news too: one write carries both, at once.
        plugin.ctx.contribute(
            key,
            uid,
            fields={"gpu": {"gpuHours": 1.0}},
            conditions=[idle("True")],
            events=[("Warning", "GPUsIdle", "x")],
        )
        status = await h.reconcile("busy")
        (write,) = h.kube.status_writes("busy")[writes:]
        assert status["phase"] == "Running" and write["gpu"] == {"gpuHours": 1.0} and "readyReplicas" in write
        types = [c["type"] for c in write["conditions"]]
        assert "Running" in types and types.count("GPUsIdle") == 1
        assert status["conditions"] == write["conditions"]
        # Its Event is posted after the write that records the condition.
        patch_at = h.kube.calls.index(("PATCH status", c.KIND, NS, "busy"))
        assert h.kube.calls.index(("CREATE", "Event", NS, "busy"), patch_at) > patch_at
        assert h.kube.events[-1][2] == "GPUsIdle" and len(h.controller.contributions) == 0

        # The lifecycle keeps a plugin's condition; a second contribution replaces it by type.
        await h.reconcile("busy")
        assert len(h.kube.status_writes("busy")) == writes + 1
        plugin.ctx.contribute(key, uid, conditions=[idle("False", "2026-11-26T12:04:00Z")])
        status = await h.reconcile("busy")
        assert list(h.kube.status_writes("busy")[-1]) == ["conditions"]
        gpus_idle = cond.find(status["conditions"], "GPUsIdle")
        assert gpus_idle is not None and gpus_idle["status"] == "False"
        assert [c["type"] for c in status["conditions"]].count("GPUsIdle") == 1

        # What a plugin returns at the end is written with the end, after any older contribution.
        plugin.ctx.contribute(key, uid, fields={"gpu": {"gpuHours": 1.5}})
        for pod in h.pods_of("busy-node"):
            h.end_pod(pod, 0, "Completed")
        status = await h.reconcile("busy")
        assert status["phase"] == "Succeeded" and status["gpu"] == {"gpuHours": 2.0, "final": True}
        assert h.kube.status_writes("busy")[-1].keys() >= {"phase", "gpu", "completionTime"}

        # A late contribution to a finished run (a final artifacts summary) is still written, by the controller.
        plugin.ctx.contribute(key, uid, fields={"artifacts": {"files": 5}})
        status = await h.reconcile("busy")
        assert status["artifacts"] == {"files": 5} and h.kube.status_writes("busy")[-1] == {"artifacts": {"files": 5}}

    run(scenario)


def test_a_contribution_made_during_a_write_waits_for_the_next_one() -> None:
    async def scenario() -> None:
        plugin = Contributor()
        h = Harness([plugin])
        await h.controller.start_plugins()
        assert plugin.ctx is not None
        await h.create(training_run("racy"))
        await h.reconcile("racy")
        key, uid = (NS, "racy"), h.kube.objects[(c.KIND, NS, "racy")]["metadata"]["uid"]
        store = h.controller.contributions
        plugin.ctx.contribute(key, uid, fields={"gpu": {"samples": 1}})
        taken = store.pending(uid)
        assert taken is not None
        plugin.ctx.contribute(key, uid, fields={"gpu": {"samples": 2}})  # arrives while the first is in flight
        store.written(uid, taken)
        rest = store.pending(uid)
        assert rest is not None and rest.apply({})["gpu"] == {"samples": 2}
        status = await h.reconcile("racy")
        assert status["gpu"] == {"samples": 2} and store.pending(uid) is None

    run(scenario)


def test_only_the_controller_writes_the_status_subresource() -> None:
    """Plugins contribute; a status patch anywhere else would bring back the races of several writers. One writer per
    kind: the run controller for TrainingRuns, the sweep controller for TrainingRunSweeps."""
    import re
    from pathlib import Path

    import runyard_operator

    package = Path(runyard_operator.__file__).parent
    writers: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        for call in re.findall(r"kube\.patch\(\s*(c\.\w+)[^)]*?sub=\"status\"", path.read_text(), flags=re.S):
            writers.setdefault(call, set()).add(str(path.relative_to(package)))
    uncounted = [p.name for p in package.rglob("*.py") if p.read_text().count('sub="status"') > 1]
    assert writers == {"c.KIND": {"controller.py"}, "c.SWEEP_KIND": {"sweeps.py"}}
    assert uncounted == []


@pytest.mark.parametrize("kind", ["Job", "Secret"])
def test_fake_kube_answers_like_the_api_server(kind: str) -> None:
    """The fake's own contract: 409 on a taken name, 404 on a missing one, 422 on a failed test, dry runs not stored."""
    from runyard_operator.k8s import ApiError

    async def scenario() -> None:
        kube = FakeKube()
        obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": "x", "namespace": NS, "labels": {"a": "1"}}}
        await kube.create(obj, dry_run=True)
        assert kube.of_kind(kind) == []
        created = await kube.create(obj)
        with pytest.raises(ApiError) as conflict:
            await kube.create(obj)
        assert conflict.value.status == 409
        with pytest.raises(ApiError) as missing:
            await kube.get(kind, NS, "y")
        assert missing.value.status == 404
        rv = created["metadata"]["resourceVersion"]
        with pytest.raises(ApiError) as stale:
            await kube.json_patch(kind, NS, "x", [{"op": "test", "path": "/metadata/resourceVersion", "value": "0"}])
        assert stale.value.status == 422
        await kube.json_patch(kind, NS, "x", [{"op": "test", "path": "/metadata/resourceVersion", "value": rv}])
        assert [o["metadata"]["name"] for o in await kube.list_items(kind, NS, label_selector="a=1")] == ["x"]
        assert await kube.list_items(kind, NS, label_selector="a!=1") == []
        generated = await kube.create({**obj, "metadata": {"generateName": "x-", "namespace": NS}})
        assert generated["metadata"]["name"].startswith("x-") and generated["metadata"]["name"] != "x-"
        kube.refuse(kind, "bad", 422, "spec: Invalid value")
        with pytest.raises(ApiError) as invalid:
            await kube.create({**obj, "metadata": {"name": "bad", "namespace": NS}}, dry_run=True)
        assert invalid.value.status == 422
        with pytest.raises(ApiError) as unsupported:
            await kube.list_items(kind, NS, field_selector="spec.foo=bar")
        assert unsupported.value.status == 400
        assert format_time(0) == "1970-01-01T00:00:00Z"

    run(scenario)


def test_a_run_that_starts_at_once_costs_two_status_writes() -> None:
    """The CRD reads an unreported run as Pending; Running is written at once; progress on the way in waits."""

    async def scenario() -> None:
        h = Harness(coalesce_seconds=30)
        await h.create(training_run("fast"))
        assert h.status("fast") == {"phase": "Pending"}  # the API server's default, no write of ours
        await h.reconcile("fast")  # children created, replicas on their way: quiet, it waits
        assert h.kube.status_writes("fast") == []
        pods = h.start_pods("fast-node", 2)
        await h.reconcile("fast")
        (running,) = h.kube.status_writes("fast")
        assert running["phase"] == "Running" and running["readyReplicas"] == 2 and running["observedGeneration"] == 1
        # One replica finishes before the other: a finished replica stays counted, nothing to write.
        h.end_pod(pods[0], 0, "Completed")
        await h.reconcile("fast")
        assert len(h.kube.status_writes("fast")) == 1
        h.end_pod(pods[1], 0, "Completed")
        h.complete_job("fast-node", 2)
        await h.reconcile("fast")
        writes = h.kube.status_writes("fast")
        assert [w.get("phase") for w in writes] == ["Running", "Succeeded"] and writes[1]["readyReplicas"] == 0
        # Its pods going away afterwards rewrite neither the counts nor the nodes it ran on.
        for pod in pods:
            await h.kube.delete("Pod", NS, pod)
        await h.reconcile("fast")
        assert len(h.kube.status_writes("fast")) == 2 and h.status("fast")["nodes"] == ["node-0", "node-1"]

    run(scenario)


def test_a_pending_run_with_a_reason_is_reported_sooner_than_one_on_its_way() -> None:
    async def scenario() -> None:
        h = Harness(coalesce_seconds=30)
        await h.create(training_run("slow"))
        await h.reconcile("slow")
        on_its_way = h.controller._coalesce_delay(
            (NS, "slow"), {}, {"phase": "Pending", "message": "m"}, lc.Decision(quiet=True)
        )
        with_reason = h.controller._coalesce_delay(
            (NS, "slow"), {}, {"phase": "Pending", "message": "m"}, lc.Decision(quiet=False)
        )
        assert on_its_way is not None and with_reason is not None
        assert 30 * 299 < on_its_way <= 30 * 300 and 30 * 2 < with_reason <= 30 * 3

        # Once "still starting" was written, more of it is not news; a reason still is.
        def recorded(reason: str) -> dict[str, Any]:
            conditions = [{"type": "Reconciling", "status": "True", "reason": reason}]
            return {"phase": "Pending", "message": "m", "observedGeneration": 1, "conditions": conditions}

        starting = {"phase": "Starting", "message": "n", "observedGeneration": 1}
        again = h.controller._coalesce_delay((NS, "slow"), recorded("Creating"), starting, lc.Decision(quiet=True))
        reason = h.controller._coalesce_delay(
            (NS, "slow"), recorded("Creating"), {**starting, "phase": "Pending"}, lc.Decision()
        )
        assert again is None and reason is not None and reason <= 30 * 3
        # Progress that replaces a recorded reason (no longer unschedulable) corrects a wrong message: as soon.
        cleared = h.controller._coalesce_delay(
            (NS, "slow"), recorded("Unschedulable"), starting, lc.Decision(quiet=True)
        )
        assert cleared is not None and cleared <= 30 * 3

    run(scenario)


class PodListener(RunPlugin):
    """Hears the pods of runs as the cache does; `fail` makes it raise, as a buggy plugin would."""

    name = "listener"

    def __init__(self, fail: bool = False) -> None:
        self.heard: list[tuple[str, str, str]] = []
        self.fail = fail

    def pod_changed(self, run_uid: str, pod: Any) -> None:
        self.heard.append((run_uid, pod.name, pod.phase))
        if self.fail:
            raise RuntimeError("plugin bug")


def test_plugins_hear_pod_changes_and_a_failing_one_does_not_stop_the_cache() -> None:
    async def scenario() -> None:
        listener, broken = PodListener(), PodListener(fail=True)
        h = Harness([broken, listener])
        await h.create(training_run("heard"))
        await h.reconcile("heard")
        uid = h.kube.objects[(c.KIND, NS, "heard")]["metadata"]["uid"]
        pods = h.start_pods("heard-node", 2)
        assert {(u, p) for u, p, phase in listener.heard if phase == "Running"} == {(uid, p) for p in pods}
        assert listener.heard == broken.heard
        assert set(h.controller.cache.pods[uid]) and len(h.controller.cache.pods[uid]) == 2
        status = await h.reconcile("heard")
        assert status["phase"] == "Running"

    run(scenario)
