"""The Helm chart on the local control plane: install, RBAC proven by the operator running as its ServiceAccount, CRD lifecycle.

kwok runs no containers, so the chart's Deployment never really starts the operator here; each test runs
`runyard-operator run` as a local process whose kubeconfig holds only a TokenRequest token of the chart's ServiceAccount.
What the operator can do is then exactly what the chart's RBAC grants.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.cluster.conftest import OperatorProcess, Runs, training_run, wait_until
from tests.conftest import Cluster
from tests.e2e.conftest import (
    CRD_NAME,
    KOPF_SCANNING_URLS,
    Release,
    create_namespace,
    delete_namespace,
    forbidden_requests,
    service_account_kubeconfig,
    short_id,
)
from tests.operator_fixtures import free_port, session_operator_paused
from tests.unit.helm.chart import CHART

# --- cluster-wide mode: one release and one operator (as its ServiceAccount) for TestClusterWide ------------------------


@dataclass
class ChartOperator:
    release: Release
    operator: OperatorProcess
    instance: str  # HOSTNAME of the operator process: Events it posts carry it as reportingInstance


@pytest.fixture(scope="class")
def chart_operator(
    cluster: Cluster, api: Any, crd: None, helm_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChartOperator]:
    namespace = create_namespace(api, "runyard-system")
    # The CRD exists (server-side applied, like tests/cluster does) and is not Helm's: install without it.
    release = Release(cluster, f"ry{short_id()}", namespace)
    try:
        release.install("--set", "crds.enabled=false")
        tmp = tmp_path_factory.mktemp("chart-operator")
        kubeconfig = service_account_kubeconfig(cluster, api, namespace, release.service_account, tmp / "kubeconfig")
        # The configuration file the chart mounts, taken from the installed ConfigMap.
        config = client.CoreV1Api(api).read_namespaced_config_map(f"{release.fullname}-config", namespace)
        mounted = yaml.safe_load(config.data["config.yaml"])
        # Out of cluster the endpoint listens on the host: a free port, so concurrent operators never collide.
        mounted["progress"]["port"] = free_port()
        (tmp / "config.yaml").write_text(yaml.safe_dump(mounted))
        instance = f"helm-e2e-{uuid.uuid4().hex[:8]}"
        operator = OperatorProcess(
            kubeconfig, tmp, extra_args=["--config", str(tmp / "config.yaml")], env={"HOSTNAME": instance}
        )
        with session_operator_paused():
            operator.start()
            try:
                yield ChartOperator(release, operator, instance)
            finally:
                operator.stop()
    finally:
        release.uninstall()
        delete_namespace(api, namespace)


@pytest.fixture
def runs(api: Any, namespace: str, chart_operator: ChartOperator) -> Runs:
    return Runs(api, namespace)


def assert_done_by(
    runs: Runs, name: str, operator: OperatorProcess, instance: str, allow: tuple[str, ...] = ()
) -> None:
    """Our ServiceAccount-token operator never hit an RBAC denial, and it posted some of the run's Events.

    Another operator running against the same cluster (a concurrent test session, a benchmark, `make operator`) would
    race ours for every run, and a run it handled proves nothing about the chart's permissions: that fails the test,
    naming the other operator, instead of passing (or skipping) on someone else's work.
    """
    # The operator posts a change's Events after the status write that a test waits on: wait for them too.
    events = wait_until(lambda: runs.events(name), timeout=30, what=f"events for {name}")
    assert forbidden_requests(operator, allow) == []
    instances = {e.reporting_instance for e in events}
    assert instance in instances, (
        f"{name} was handled by operator(s) {sorted(instances)}, not the chart's ({instance}): stop the other operator "
        "(make operator, a benchmark, another test session) and rerun"
    )


# (verb, resource) the scenarios below make the operator send, as counted by runyard_api_requests_total.
EXERCISED = [
    ("post", "jobs"),
    ("post", "services"),
    ("post", "configmaps"),
    ("post", "secrets"),
    ("post", "events"),
    ("patch", "trainingruns/status"),
    ("patch", "jobs"),
    ("delete", "trainingruns"),
]


def authorized_requests(operator: OperatorProcess) -> dict[tuple[str, str], float]:
    """Requests per (verb, resource) that passed authorization: runyard_api_requests_total minus its 403 errors.

    A 409 or 404 answer still proves RBAC allowed the request (authorization runs before admission and storage).
    """
    counts: dict[tuple[str, str], float] = {}
    for line in operator.metrics().splitlines():
        for name, sign in (("runyard_api_requests_total{", 1), ("runyard_api_errors_total{", -1)):
            if line.startswith(name):
                labels = dict(kv.split("=", 1) for kv in line[len(name) : line.index("}")].split(","))
                if sign < 0 and labels["code"] != '"403"':
                    continue
                key = (labels["verb"].strip('"'), labels["resource"].strip('"'))
                counts[key] = counts.get(key, 0.0) + sign * float(line.rsplit(" ", 1)[1])
    return counts


# What the ServiceAccount may do (cluster-wide mode): every verb the operator and kopf use ...
ALLOWED = [
    ("list", "trainingruns.runyard.dev", "-A"),
    ("watch", "trainingruns.runyard.dev", "-A"),
    ("patch", "trainingruns.runyard.dev", "-n", "default"),
    ("delete", "trainingruns.runyard.dev", "-n", "default"),
    ("patch", "trainingruns.runyard.dev", "--subresource=status", "-n", "default"),
    ("update", "trainingruns.runyard.dev", "--subresource=finalizers", "-n", "default"),
    ("list", "jobs.batch", "-A"),
    ("watch", "jobs.batch", "-A"),
    ("create", "jobs.batch", "-n", "default"),
    ("get", "jobs.batch", "-n", "default"),
    ("patch", "jobs.batch", "-n", "default"),
    ("delete", "jobs.batch", "-n", "default"),
    ("list", "pods", "-A"),
    ("watch", "pods", "-A"),
    ("get", "pods", "--subresource=log", "-n", "default"),
    ("create", "services", "-n", "default"),
    ("get", "services", "-n", "default"),
    ("create", "configmaps", "-n", "default"),
    ("get", "configmaps", "-n", "default"),
    ("create", "secrets", "-n", "default"),
    ("create", "events", "-n", "default"),
    ("list", "events", "-n", "default"),
    ("watch", "events", "-A"),  # only FailedCreate, by field selector
    ("list", "customresourcedefinitions.apiextensions.k8s.io", "-A"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io", "-A"),
    # Sweeps create their trials; templates are read when a run is first seen.
    ("create", "trainingruns.runyard.dev", "-n", "default"),
    ("get", "trainingruns.runyard.dev", "-n", "default"),
    ("list", "trainingrunsweeps.runyard.dev", "-A"),
    ("watch", "trainingrunsweeps.runyard.dev", "-A"),
    ("patch", "trainingrunsweeps.runyard.dev", "--subresource=status", "-n", "default"),
    ("get", "trainingruntemplates.runyard.dev", "-n", "default"),
    ("get", "clustertrainingruntemplates.runyard.dev", "-A"),
    ("list", "clustertrainingruntemplates.runyard.dev", "-A"),
]
# ... and nothing more.
DENIED = [
    ("*", "*", "-A"),  # not cluster-admin
    ("list", "secrets", "-A"),
    ("watch", "secrets", "-A"),
    # No reading or patching Secrets, not even the operator's own MPI keys (docs/security.md).
    ("get", "secrets", "-n", "default"),
    ("get", "secrets", "-n", "kube-system"),
    ("patch", "secrets", "-n", "default"),
    # Nothing is ever taken over: no patching of Services or ConfigMaps.
    ("patch", "services", "-n", "default"),
    ("patch", "configmaps", "-n", "default"),
    ("get", "namespaces", "-A"),  # only with config.namespaces.matchLabels
    ("list", "secrets", "-n", "kube-system"),
    ("delete", "secrets", "-n", "default"),
    ("update", "secrets", "-n", "default"),
    ("create", "pods", "-n", "default"),
    ("delete", "pods", "-n", "default"),
    ("create", "pods", "--subresource=exec", "-n", "default"),
    ("create", "pods", "--subresource=eviction", "-n", "default"),
    ("create", "nodes", "-A"),
    ("patch", "nodes", "-A"),
    ("update", "nodes", "-A"),
    ("delete", "nodes", "-A"),
    ("patch", "nodes", "--subresource=status", "-A"),
    ("create", "clusterroles.rbac.authorization.k8s.io", "-A"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", "-A"),
    ("create", "rolebindings.rbac.authorization.k8s.io", "-n", "default"),
    ("create", "roles.rbac.authorization.k8s.io", "-n", "default"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", "-A"),
    ("bind", "clusterroles.rbac.authorization.k8s.io", "-A"),
    ("impersonate", "users", "-A"),
    ("impersonate", "serviceaccounts", "-A"),
    ("create", "serviceaccounts", "--subresource=token", "-n", "default"),
    ("update", "trainingruns.runyard.dev", "-n", "default"),
    ("update", "trainingrunsweeps.runyard.dev", "-n", "default"),
    ("create", "trainingrunsweeps.runyard.dev", "-n", "default"),
    ("create", "trainingruntemplates.runyard.dev", "-n", "default"),
    ("create", "clustertrainingruntemplates.runyard.dev", "-A"),
    ("update", "trainingruns.runyard.dev", "--subresource=status", "-n", "default"),
    ("update", "jobs.batch", "-n", "default"),
    ("delete", "services", "-n", "default"),
    ("delete", "configmaps", "-n", "default"),
    ("list", "services", "-A"),
    ("list", "configmaps", "-A"),
    ("list", "namespaces", "-A"),
    ("create", "namespaces", "-A"),
    ("create", "leases.coordination.k8s.io", "-n", "default"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", "-A"),
    ("update", "customresourcedefinitions.apiextensions.k8s.io", "-A"),
    ("create", "mutatingwebhookconfigurations.admissionregistration.k8s.io", "-A"),
    ("create", "deployments.apps", "-n", "default"),
]


class TestClusterWide:
    """The default install (ClusterRole); the operator runs cluster-wide as the chart's ServiceAccount."""

    def test_install_creates_the_objects(self, api: Any, chart_operator: ChartOperator) -> None:
        release = chart_operator.release
        name, ns = release.fullname, release.namespace
        core, apps, rbac = client.CoreV1Api(api), client.AppsV1Api(api), client.RbacAuthorizationV1Api(api)
        assert core.read_namespaced_service_account(name, ns)
        config = yaml.safe_load(core.read_namespaced_config_map(f"{name}-config", ns).data["config.yaml"])
        assert config["tracking"] == {} and config["namespaces"]["exclude"] == [
            "kube-system",
            "kube-public",
            "kube-node-lease",
        ]
        assert config["podPolicy"]["allowPrivileged"] is False
        svc = core.read_namespaced_service(f"{name}-metrics", ns)
        assert svc.spec.ports[0].port == 8080
        deploy = apps.read_namespaced_deployment(name, ns)
        assert deploy.spec.strategy.type == "Recreate"
        assert deploy.spec.template.spec.containers[0].security_context.read_only_root_filesystem is True
        assert rbac.read_cluster_role(name).rules
        assert rbac.read_cluster_role_binding(name).subjects[0].name == release.service_account
        assert rbac.read_cluster_role(f"{name}-edit") and rbac.read_cluster_role(f"{name}-view")
        status = release.helm("status", release.name, "-o", "json").stdout
        assert json.loads(status)["info"]["status"] == "deployed"
        # The operator started as the ServiceAccount and is ready (its watches run) without any 403.
        assert forbidden_requests(chart_operator.operator) == []

    def test_pytorch_run_succeeds(self, runs: Runs, chart_operator: ChartOperator) -> None:
        runs.create(training_run("torch", "pytorch", {"node": 2}, gpus=8))
        status = runs.wait_phase("torch", "Succeeded", timeout=90)
        assert status["totalReplicas"] == 2 and status["restarts"] == 0
        assert [j.metadata.name for j in runs.jobs("torch")] == ["torch-node"]
        assert_done_by(runs, "torch", chart_operator.operator, chart_operator.instance)

    def test_failing_run_fails_with_exit_code(self, runs: Runs, chart_operator: ChartOperator) -> None:
        runs.create(
            training_run("bug", outcome="fail", sim={"sim.runyard.dev/exit-code": "3"}, run_policy={"backoffLimit": 0})
        )
        status = runs.wait_phase("bug", "Failed", timeout=90)
        assert status["failure"]["exitCode"] == 3
        assert_done_by(runs, "bug", chart_operator.operator, chart_operator.instance)

    def test_mpi_run_succeeds_with_configmap_and_secret(self, runs: Runs, chart_operator: ChartOperator) -> None:
        runs.create(training_run("mpi", "mpi", {"launcher": 1, "worker": 2}))
        status = runs.wait_phase("mpi", "Succeeded", timeout=90)
        cm = runs.core.read_namespaced_config_map("mpi-mpi", runs.namespace)
        assert "mpi-worker-0" in cm.data["hostfile"]
        assert runs.core.read_namespaced_secret(status["sshSecret"], runs.namespace).type == "kubernetes.io/ssh-auth"
        assert_done_by(runs, "mpi", chart_operator.operator, chart_operator.instance)

    def test_suspend_and_resume(self, runs: Runs, chart_operator: ChartOperator) -> None:
        runs.create(training_run("pause", outcome="running"))
        runs.wait_phase("pause", "Running", timeout=90)
        runs.patch("pause", {"spec": {"runPolicy": {"suspend": True}}})
        runs.wait_phase("pause", "Suspended")
        wait_until(lambda: all(j.spec.suspend for j in runs.jobs("pause")), what="jobs suspended")
        runs.patch("pause", {"spec": {"runPolicy": {"suspend": False}}})
        runs.wait_phase("pause", "Running")
        assert_done_by(runs, "pause", chart_operator.operator, chart_operator.instance)

    def test_delete_mid_run(self, runs: Runs, chart_operator: ChartOperator) -> None:
        runs.create(training_run("gone", outcome="running"))
        runs.wait_phase("gone", "Running", timeout=90)
        runs.delete("gone")
        wait_until(lambda: not runs.jobs("gone") and not runs.pods("gone"), what="children garbage-collected")
        with pytest.raises(client.ApiException) as err:
            runs.get("gone")
        assert err.value.status == 404
        assert_done_by(runs, "gone", chart_operator.operator, chart_operator.instance)

    def test_ttl_deletes_finished_run(self, runs: Runs, chart_operator: ChartOperator) -> None:
        runs.create(training_run("ttl", replicas={"node": 1}, run_policy={"ttlSecondsAfterFinished": 1}))

        def deleted() -> bool:
            try:
                runs.get("ttl")
            except client.ApiException as err:
                return err.status == 404
            return False

        wait_until(deleted, timeout=90, what="run deleted after its TTL")
        assert_done_by(runs, "ttl", chart_operator.operator, chart_operator.instance)

    def test_every_operator_request_kind_succeeded(self, chart_operator: ChartOperator) -> None:
        """Each kind of request the scenarios need passed authorization at least once with the ServiceAccount's token."""
        ok = authorized_requests(chart_operator.operator)
        missing = [f"{verb} {resource}" for verb, resource in EXERCISED if ok.get((verb, resource), 0) < 1]
        assert forbidden_requests(chart_operator.operator) == []
        assert missing == [], f"the operator never completed {missing}: {ok}"

    def test_admission_policy_denies_what_rbac_alone_would_allow(self, chart_operator: ChartOperator) -> None:
        """A cluster-wide ClusterRole could create a Job in kube-system as any ServiceAccount there (a path to
        cluster-admin); the chart's ValidatingAdmissionPolicy denies it, and pods with host powers, at the API server."""
        release = chart_operator.release

        def dry_run(namespace: str, **pod_spec: Any) -> Any:
            spec = {"restartPolicy": "Never", "containers": [{"name": "trainer", "image": "i"}], **pod_spec}
            job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "probe"},
                   "spec": {"template": {"spec": spec}}}  # fmt: skip
            return release.cluster.kubectl(
                "create", "-f", "-", "--dry-run=server", "-n", namespace, release.as_sa(),
                input=json.dumps(job), check=False,
            )  # fmt: skip

        assert release.can_i("create", "jobs.batch", "-n", "kube-system")  # RBAC alone would allow it
        denied = dry_run("kube-system", serviceAccountName="clusterrole-aggregation-controller")
        assert denied.returncode != 0 and "may not write jobs in namespace kube-system" in denied.stderr, denied.stderr
        assert dry_run(release.namespace).returncode != 0  # its own namespace, where its ServiceAccount lives
        host = dry_run("default", volumes=[{"name": "root", "hostPath": {"path": "/"}}])
        assert host.returncode != 0 and "hostPath" in host.stderr, host.stderr
        privileged = dry_run(
            "default", containers=[{"name": "t", "image": "i", "securityContext": {"privileged": True}}]
        )
        assert privileged.returncode != 0 and "privileged" in privileged.stderr, privileged.stderr
        allowed = dry_run("default")
        assert allowed.returncode == 0, allowed.stderr

    def test_rbac_matrix_is_exactly_what_the_operator_needs(self, chart_operator: ChartOperator) -> None:
        release = chart_operator.release
        wrong = [f"{' '.join(c)}: should be allowed" for c in ALLOWED if not release.can_i(*c)]
        wrong += [f"{' '.join(c)}: should be denied" for c in DENIED if release.can_i(*c)]
        assert wrong == []

    def test_namespace_users_get_trainingruns_through_builtin_roles(
        self, cluster: Cluster, api: Any, namespace: str, chart_operator: ChartOperator
    ) -> None:
        rbac = client.RbacAuthorizationV1Api(api)
        for user, role in (("alice", "edit"), ("bob", "view")):
            rbac.create_namespaced_role_binding(
                namespace,
                {
                    "metadata": {"name": f"{user}-{role}"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
                },
            )

        def can(user: str, verb: str) -> bool:
            res = cluster.kubectl(
                "auth", "can-i", verb, "trainingruns.runyard.dev", "-n", namespace, f"--as={user}", check=False
            )
            return res.stdout.strip() == "yes"

        # Aggregation is done by the controller-manager's clusterrole-aggregation controller: give it a moment.
        wait_until(lambda: can("alice", "create") and can("bob", "list"), timeout=30, what="aggregated roles")
        assert can("alice", "delete") and not can("bob", "create") and not can("bob", "delete")
        cluster.kubectl("get", "tr", "-n", namespace, "--as=bob")

    def test_default_template_from_values_reaches_every_new_run(
        self, cluster: Cluster, api: Any, runs: Runs, chart_operator: ChartOperator, tmp_path: Path
    ) -> None:
        """A platform team sets the tracker and the artifact store once, in the chart's values; every new run picks
        them up and cannot change the locked store. Last in the class: the default template applies cluster-wide."""
        release = chart_operator.release
        values = {
            "defaultTemplate": {
                "enabled": True,
                "defaults": {
                    "tracking": {"trackers": ["wandb"]},
                    "env": [{"name": "WANDB_BASE_URL", "value": "http://wandb.platform:8080"}],
                    "artifacts": {"store": "pvc://team-runs"},
                },
                "locks": {"fields": ["artifacts.store"]},
            }
        }
        (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
        name = f"{release.fullname}-default"
        try:
            release.upgrade("--reuse-values", "-f", str(tmp_path / "values.yaml"))
            template = client.CustomObjectsApi(api).get_cluster_custom_object(
                "runyard.dev", "v1alpha1", "clustertrainingruntemplates", name
            )
            assert template["metadata"]["labels"]["runyard.dev/default-template"] == "true"
            runs.create(training_run("platform"))
            status = wait_until(
                lambda: (s := runs.status("platform")).get("template") and runs.jobs("platform") and s,
                timeout=60,
                what="the run created with the default template",
            )
            assert status["template"]["name"] == name
            (job,) = runs.jobs("platform")
            pod = job.spec.template.spec
            (trainer,) = [c for c in pod.containers if c.name == "trainer"]
            env = {e.name: e.value for e in trainer.env}
            assert env["WANDB_BASE_URL"] == "http://wandb.platform:8080" and "WANDB_RUN_GROUP" in env
            claims = [v.persistent_volume_claim.claim_name for v in pod.volumes if v.persistent_volume_claim]
            assert claims == ["team-runs"]
            runs.create(training_run("own-store", artifacts={"store": "pvc://mine"}))
            refused = runs.wait_phase("own-store", "Failed")
            assert f"spec.artifacts.store: locked by ClusterTrainingRunTemplate {name}" in refused["message"]
            assert_done_by(runs, "own-store", chart_operator.operator, chart_operator.instance)
        finally:
            # Helm keeps hook objects after an upgrade or uninstall, like the CRD: removed here by hand.
            cluster.kubectl("delete", "clustertrainingruntemplates", name, "--ignore-not-found")


# --- namespaced mode ---------------------------------------------------------------------------------------------------


def test_namespaced_mode_with_roles_only(
    cluster: Cluster, api: Any, namespace: str, release_namespace: str, crd: None, helm_bin: Path, tmp_path: Path
) -> None:
    release = Release(cluster, f"ry{short_id()}", release_namespace)
    try:
        release.install(
            "--set",
            f"watchNamespaces={{{namespace}}}",
            "--set",
            "crds.enabled=false",
            "--set",
            "rbac.aggregateToDefaultRoles=false",
        )
        rbac = client.RbacAuthorizationV1Api(api)
        selector = f"app.kubernetes.io/instance={release.name}"
        # Cluster-wide, only what no Role can grant: creating TokenReviews (cluster-scoped) for the progress channel,
        # which reads nothing, and reading the cluster-scoped templates (for the operator, and for every authenticated
        # user). Everything else is a Role in the watched namespace.
        cluster_roles = {
            r.metadata.name.removeprefix(release.fullname + "-"): [
                (x.api_groups, x.resources, x.verbs) for x in r.rules
            ]
            for r in rbac.list_cluster_role(label_selector=selector).items
        }
        assert cluster_roles == {
            "progress": [(["authentication.k8s.io"], ["tokenreviews"], ["create"])],
            "templates": [(["runyard.dev"], ["clustertrainingruntemplates"], ["get", "list"])],
            "template-reader": [(["runyard.dev"], ["clustertrainingruntemplates"], ["get", "list", "watch"])],
        }
        bindings = {b.role_ref.name for b in rbac.list_cluster_role_binding(label_selector=selector).items}
        assert bindings == {f"{release.fullname}-{suffix}" for suffix in cluster_roles}
        roles = rbac.list_role_for_all_namespaces(label_selector=selector).items
        assert [r.metadata.namespace for r in roles] == [namespace]
        # Only the watched namespace: nothing cluster-wide, nothing in other namespaces.
        assert release.can_i("list", "trainingruns.runyard.dev", "-n", namespace)
        assert release.can_i("create", "jobs.batch", "-n", namespace)
        assert not release.can_i("list", "trainingruns.runyard.dev", "-A")
        assert not release.can_i("list", "trainingruns.runyard.dev", "-n", "default")
        assert not release.can_i("get", "secrets", "-n", "default")
        assert not release.can_i("create", "jobs.batch", "-n", release_namespace)
        assert not release.can_i("list", "customresourcedefinitions.apiextensions.k8s.io", "-A")

        kubeconfig = service_account_kubeconfig(
            cluster, api, release_namespace, release.service_account, tmp_path / "kc"
        )
        instance = f"helm-ns-{uuid.uuid4().hex[:8]}"
        operator = OperatorProcess(kubeconfig, tmp_path, extra_args=["-n", namespace], env={"HOSTNAME": instance})
        with session_operator_paused():
            operator.start()
            try:
                runs = Runs(api, namespace)
                # With -n the operator disables kopf's cluster scans (settings.scanning.disabled), so the Roles suffice
                # from the first second: no forbidden namespace/CRD list may appear in its log.
                started = time.monotonic()
                runs.create(training_run("scoped", replicas={"node": 2}))
                runs.create(training_run("scoped-mpi", "mpi", {"launcher": 1, "worker": 1}))
                runs.wait_phase("scoped", "Succeeded", timeout=90)
                mpi_status = runs.wait_phase("scoped-mpi", "Succeeded", timeout=60)
                print(f"namespaced runs done {time.monotonic() - started:.0f}s after the operator was ready")
                assert runs.core.read_namespaced_secret(mpi_status["sshSecret"], namespace)
                assert_done_by(runs, "scoped-mpi", operator, instance, allow=KOPF_SCANNING_URLS)
                assert_done_by(runs, "scoped", operator, instance, allow=KOPF_SCANNING_URLS)
                ok = authorized_requests(operator)
                needed = [("post", "jobs"), ("post", "services"), ("post", "configmaps"), ("post", "secrets")]
                needed.append(("patch", "trainingruns/status"))
                missing = [f"{verb} {res}" for verb, res in needed if not ok.get((verb, res))]
                assert missing == [], f"the namespaced operator never completed {missing}: {ok}"
            finally:
                operator.stop()
    finally:
        release.uninstall()


# --- CRD lifecycle: adoption, upgrade, uninstall keeps it --------------------------------------------------------------


def _chart_copy_with_crd_group(dest: Path, group: str) -> tuple[Path, Path]:
    """A copy of the chart whose CRDs are served under `group`, so the shared runyard.dev ones are never touched."""
    chart = dest / "runyard"
    shutil.copytree(CHART, chart)
    for path in (chart / "files" / "crds").glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        crd["spec"]["group"] = group
        crd["metadata"]["name"] = f"{crd['spec']['names']['plural']}.{group}"
        # No short name or category: `kubectl get tr` in other tests must keep meaning runyard.dev.
        crd["spec"]["names"].pop("shortNames", None)
        crd["spec"]["names"].pop("categories", None)
        path.write_text(yaml.safe_dump(crd, sort_keys=False))
    return chart, chart / "files" / "crds" / "runyard.dev_trainingruns.yaml"


def test_crd_adopted_upgraded_and_kept_on_uninstall(
    cluster: Cluster, api: Any, namespace: str, release_namespace: str, helm_bin: Path, tmp_path: Path
) -> None:
    group = f"e2e{short_id()}.runyard.dev"
    crd_name = f"trainingruns.{group}"
    chart, crd_file = _chart_copy_with_crd_group(tmp_path, group)
    release = Release(cluster, f"ry{short_id()}", release_namespace, chart=chart)
    ext = client.ApiextensionsV1Api(api)
    try:
        # 1. The CRD already exists, applied with kubectl server-side apply (as tests/cluster and GitOps do):
        #    a plain install refuses to take it over ...
        cluster.kubectl("apply", "--server-side", "-f", str(crd_file))
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd_name}", "--timeout=60s")
        refused = release.helm("install", release.name, str(chart), check=False)
        assert refused.returncode != 0 and "cannot be imported" in refused.stderr, refused.stderr
        # ... until it is handed over with Helm's ownership metadata (README.md, "CRD policy").
        cluster.kubectl("label", "crd", crd_name, "app.kubernetes.io/managed-by=Helm", "--overwrite")
        cluster.kubectl(
            "annotate",
            "crd",
            crd_name,
            f"meta.helm.sh/release-name={release.name}",
            f"meta.helm.sh/release-namespace={release_namespace}",
            "--overwrite",
        )
        release.install()
        live = ext.read_custom_resource_definition(crd_name)
        assert live.metadata.annotations["helm.sh/resource-policy"] == "keep"
        assert live.metadata.labels["app.kubernetes.io/instance"] == release.name

        # 2. A user's run in that CRD.
        run = training_run("keepme")
        run["apiVersion"] = f"{group}/v1alpha1"
        custom = client.CustomObjectsApi(api)
        custom.create_namespaced_custom_object(group, "v1alpha1", namespace, "trainingruns", run)

        # 3. helm upgrade applies a changed CRD (extra printer column and description).
        crd = yaml.safe_load(crd_file.read_text())
        version = crd["spec"]["versions"][0]
        version["additionalPrinterColumns"].append(
            {"name": "Image", "type": "string", "jsonPath": ".spec.image", "description": "Training image."}
        )
        version["schema"]["openAPIV3Schema"]["description"] = "Upgraded by test_helm."
        crd_file.write_text(yaml.safe_dump(crd, sort_keys=False))
        release.upgrade()
        live = ext.read_custom_resource_definition(crd_name)
        (served,) = live.spec.versions
        assert "Image" in [c.name for c in served.additional_printer_columns]
        assert served.schema.open_apiv3_schema.description == "Upgraded by test_helm."
        table = cluster.kubectl("get", f"trainingruns.{group}", "-n", namespace).stdout
        assert "IMAGE" in table and "ghcr.io/runyard/examples" in table

        # 4. helm uninstall keeps the CRD and the user's run.
        release.uninstall()
        assert ext.read_custom_resource_definition(crd_name).metadata.deletion_timestamp is None
        kept = custom.get_namespaced_custom_object(group, "v1alpha1", namespace, "trainingruns", "keepme")
        assert kept["metadata"].get("deletionTimestamp") is None
    finally:
        release.uninstall()
        for plural in ("trainingruns", "trainingruntemplates", "clustertrainingruntemplates", "trainingrunsweeps"):
            cluster.kubectl("delete", "crd", f"{plural}.{group}", "--ignore-not-found", "--wait=false")


def test_shared_crd_matches_the_chart_copy(api: Any, crd: None) -> None:
    """The CRD the other tests apply from crds/ is the one the chart ships (same group and versions)."""
    shipped = yaml.safe_load((CHART / "files" / "crds" / "runyard.dev_trainingruns.yaml").read_text())
    live = client.ApiextensionsV1Api(api).read_custom_resource_definition(CRD_NAME)
    assert live.spec.group == shipped["spec"]["group"]
    assert [v.name for v in live.spec.versions] == [v["name"] for v in shipped["spec"]["versions"]]
