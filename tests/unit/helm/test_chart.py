"""Golden renders of helm/runyard per ci/ scenario, plus checks of its CRD copy, RBAC, config, schema and docs."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from runyard_operator.artifacts.config import parse_artifacts_config
from runyard_operator.config import OperatorConfig
from runyard_operator.gpu.config import parse_gpu_config
from tests.unit.helm.chart import CHART, ROOT, SCENARIOS, documents, find, helm, helm_path, template


@pytest.fixture(autouse=True)
def _helm_built() -> None:
    # CI builds helm: a missing binary is a broken setup, not a reason to pass silently.
    assert helm_path().exists(), "helm not built: run `make binaries`"


GOLDEN = Path(__file__).parent / "golden"
CRD_NAME = "trainingruns.runyard.dev"
CRD_PLACEHOLDER = "# TrainingRun CRD omitted: test_rendered_crd_is_the_generated_crd checks it\n"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_chart", ROOT / "hack" / "generate_chart.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _without_crd(rendered: str) -> str:
    """The render with the CRD document replaced by a placeholder, so golden files do not churn with every CRD change."""
    parts = re.split(r"(?m)^---\n", rendered)
    return "---\n".join(CRD_PLACEHOLDER if "kind: CustomResourceDefinition" in p else p for p in parts)


def _config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (cm,) = [d for d in find(docs, "ConfigMap") if d["metadata"]["name"].endswith("-config")]
    return dict(yaml.safe_load(cm["data"]["config.yaml"]))


def _operator_args(docs: list[dict[str, Any]]) -> list[str]:
    (deploy,) = [
        d for d in find(docs, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"
    ]
    return list(deploy["spec"]["template"]["spec"]["containers"][0]["args"])


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.name.removesuffix("-values.yaml") for p in SCENARIOS])
def test_render_matches_golden(scenario: Path, update_golden: bool) -> None:
    rendered = _without_crd(template("-f", str(scenario)))
    path = GOLDEN / f"{scenario.name.removesuffix('-values.yaml')}.yaml"
    if update_golden:
        path.write_text(rendered)
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1"
    assert rendered == path.read_text(), f"{path.name} differs: review `git diff`, then rerun with UPDATE_GOLDEN=1"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.name.removesuffix("-values.yaml") for p in SCENARIOS])
def test_lint_strict(scenario: Path) -> None:
    helm("lint", "--strict", str(CHART), "-f", str(scenario))


def test_crd_copy_is_byte_identical_to_crds_dir() -> None:
    sources = sorted((ROOT / "crds").glob("*.yaml"))
    copies = sorted((CHART / "files" / "crds").glob("*.yaml"))
    assert [p.name for p in copies] == [p.name for p in sources]
    for src, dst in zip(sources, copies, strict=True):
        assert dst.read_bytes() == src.read_bytes(), f"{dst} is stale: run `make generate`"


def test_rendered_crd_is_the_generated_crd_plus_helm_metadata() -> None:
    (crd,) = find(documents(template()), "CustomResourceDefinition", CRD_NAME)
    source = yaml.safe_load((ROOT / "crds" / f"{CRD_NAME.split('.', 1)[1]}_trainingruns.yaml").read_text())
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert crd["spec"] == source["spec"], "the chart must not change the generated schema"
    assert {k: v for k, v in crd["metadata"].items() if k not in ("labels", "annotations")} == {
        k: v for k, v in source["metadata"].items() if k not in ("labels", "annotations")
    }


def test_crds_disabled_or_not_kept() -> None:
    assert not find(documents(template("--set", "crds.enabled=false")), "CustomResourceDefinition")
    crds = find(documents(template("--set", "crds.keep=false")), "CustomResourceDefinition")
    assert {d["metadata"]["name"] for d in crds} == {
        "trainingruns.runyard.dev",
        "trainingruntemplates.runyard.dev",
        "clustertrainingruntemplates.runyard.dev",
        "trainingrunsweeps.runyard.dev",
    }
    for crd in crds:
        assert "helm.sh/resource-policy" not in (crd["metadata"].get("annotations") or {})


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[p.name.removesuffix("-values.yaml") for p in SCENARIOS])
def test_rendered_config_is_valid_operator_config(scenario: Path) -> None:
    config = OperatorConfig.model_validate(_config(documents(template("-f", str(scenario)))))
    assert config.tracking is not None
    # The plugins validate their own sections (free-form dicts in OperatorConfig).
    parse_gpu_config(config.gpu_metrics)
    parse_artifacts_config(config.artifacts)


def test_gpu_exporter_role_only_where_endpoints_are_discovered() -> None:
    docs = documents(template("-f", str(CHART / "ci" / "external-mlflow-values.yaml")))
    (role,) = find(docs, "Role", "runyard-gpu-exporters")
    assert role["metadata"]["namespace"] == "gpu-operator"
    assert _flatten(role["rules"]) == {("discovery.k8s.io", "endpointslices"): {"list"}}
    (binding,) = find(docs, "RoleBinding", "runyard-gpu-exporters")
    assert binding["subjects"][0] == {"kind": "ServiceAccount", "name": "runyard", "namespace": "runyard-system"}
    agent = documents(template("--set", "config.gpuMetrics.source=agent"))
    assert [r["metadata"]["namespace"] for r in find(agent, "Role")] == ["runyard-system"]
    for flags in (
        ["--set", "config.gpuMetrics.source=prometheus", "--set", "config.gpuMetrics.prometheus.url=http://p:9090"],
        ["--set", "config.gpuMetrics.enabled=false"],
        ["--set", "config.gpuMetrics.dcgm.endpoints.node-0=http://10.0.0.1:9400/metrics"],
    ):
        assert not find(documents(template(*flags)), "Role")


def test_bundled_mlflow_becomes_the_default_tracker() -> None:
    docs = documents(template("--set", "mlflow.enabled=true"))
    config = _config(docs)
    assert config["tracking"]["defaultTrackers"] == ["mlflow"]
    assert config["tracking"]["mlflow"]["trackingUri"] == "http://runyard-mlflow.runyard-system.svc:5000"
    (deploy,) = find(docs, "Deployment", "runyard-mlflow")
    cmd = deploy["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[:2] == ["mlflow", "server"]
    assert "--backend-store-uri=sqlite:////data/mlflow.db" in cmd and "--serve-artifacts" in cmd
    assert "--artifacts-destination=/data/artifacts" in cmd
    assert find(docs, "Service", "runyard-mlflow") and find(docs, "PersistentVolumeClaim", "runyard-mlflow")
    # An explicit tracking URI wins over the bundled server.
    explicit = _config(
        documents(template("--set", "mlflow.enabled=true", "--set", "config.tracking.mlflow.trackingUri=http://x:1"))
    )
    assert explicit["tracking"]["mlflow"]["trackingUri"] == "http://x:1"
    assert _config(documents(template()))["tracking"] == {}


# The operator's rules, exactly: adding a verb must be a deliberate change to this table and to README.md.
EXPECTED_RULES = {
    ("runyard.dev", "trainingruns"): {"list", "watch", "create", "get", "patch", "delete"},  # + sweep trials
    ("runyard.dev", "trainingrunsweeps"): {"list", "watch"},
    ("runyard.dev", "trainingrunsweeps/status"): {"patch"},
    ("runyard.dev", "trainingruns/status"): {"patch"},
    ("runyard.dev", "trainingruns/finalizers"): {"update"},
    ("runyard.dev", "trainingruntemplates"): {"get"},  # spec.templateRef, read when a run is first seen
    ("batch", "jobs"): {"list", "watch", "create", "get", "patch", "delete"},
    ("", "pods"): {"list", "watch"},
    ("", "pods/log"): {"get"},  # a failed replica's last lines (status.failure.logTail)
    ("", "services"): {"create", "get"},
    ("", "configmaps"): {"create", "get"},
    ("", "secrets"): {"create"},
    ("", "events"): {"create", "list", "watch"},
}


def _flatten(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


def test_cluster_mode_rbac_is_exactly_the_documented_rules() -> None:
    docs = documents(template())
    (role,) = find(docs, "ClusterRole", "runyard")
    rules = _flatten(role["rules"])
    assert rules == {
        **EXPECTED_RULES,
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
        ("runyard.dev", "clustertrainingruntemplates"): {"get", "list"},
    }
    assert all("*" not in verbs for verbs in rules.values())
    (binding,) = find(docs, "ClusterRoleBinding", "runyard")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "runyard", "namespace": "runyard-system"}]
    assert not find(docs, "Role") and not find(docs, "RoleBinding")
    assert not any(a.startswith("--namespace") for a in _operator_args(docs))


def test_namespaced_mode_renders_roles_only() -> None:
    docs = documents(template("-f", str(CHART / "ci" / "namespaced-values.yaml")))
    # Cluster-scoped for the operator: the read of ClusterTrainingRunTemplates and the progress endpoint's TokenReview
    # grant (TokenReview has no namespace); the users' read of cluster templates is bound to system:authenticated.
    operator_roles = {"runyard-templates", "runyard-progress"}
    assert {r["metadata"]["name"] for r in find(docs, "ClusterRole")} == operator_roles | {"runyard-template-reader"}
    assert {r["metadata"]["name"] for r in find(docs, "ClusterRoleBinding")} == operator_roles | {
        "runyard-template-reader"
    }
    (templates,) = find(docs, "ClusterRole", "runyard-templates")
    assert _flatten(templates["rules"]) == {("runyard.dev", "clustertrainingruntemplates"): {"get", "list"}}
    (reader,) = find(docs, "ClusterRoleBinding", "runyard-template-reader")
    assert reader["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:authenticated"}
    ]
    assert not find(docs, "CustomResourceDefinition")
    roles = find(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert _flatten(role["rules"]) == EXPECTED_RULES
    bindings = find(docs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert all(b["subjects"][0]["namespace"] == "runyard-system" for b in bindings)
    args = _operator_args(docs)
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=team-a", "--namespace=team-b"]


def test_progress_endpoint_gets_a_service_a_port_its_url_and_only_tokenreview_create() -> None:
    docs = documents(template())
    (role,) = find(docs, "ClusterRole", "runyard-progress")
    assert _flatten(role["rules"]) == {("authentication.k8s.io", "tokenreviews"): {"create"}}
    (binding,) = find(docs, "ClusterRoleBinding", "runyard-progress")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "runyard", "namespace": "runyard-system"}]
    (service,) = find(docs, "Service", "runyard-progress")
    assert service["spec"]["ports"] == [{"name": "progress", "port": 8082, "targetPort": "progress", "protocol": "TCP"}]
    assert _config(docs)["progress"] == {
        "url": "http://runyard-progress.runyard-system.svc:8082/v1/progress",
        "port": 8082,
        "writeIntervalSeconds": 30,
        "reportIntervalSeconds": 10,
    }
    off = documents(template("--set", "progress.enabled=false"))
    assert not find(off, "ClusterRole", "runyard-progress") and not find(off, "Service", "runyard-progress")
    assert "progress" not in _config(off)


def test_namespace_opt_in_adds_only_namespace_get() -> None:
    docs = documents(template("--set-json", 'config.namespaces.matchLabels={"runyard.dev/enabled": "true"}'))
    (role,) = find(docs, "ClusterRole", "runyard")
    assert _flatten(role["rules"])[("", "namespaces")] == {"get"}
    assert _config(docs)["namespaces"]["matchLabels"] == {"runyard.dev/enabled": "true"}


def test_admission_policies_bind_the_operators_service_account() -> None:
    docs = documents(template("--set-json", 'config.podPolicy.allowedHostPaths=["/datasets"]'))
    policies = {p["metadata"]["name"]: p for p in find(docs, "ValidatingAdmissionPolicy")}
    assert sorted(policies) == ["runyard-namespaces", "runyard-pod-policy"]
    for policy in policies.values():
        (condition,) = policy["spec"]["matchConditions"]
        assert condition["expression"] == "request.userInfo.username == 'system:serviceaccount:runyard-system:runyard'"
    namespaces = policies["runyard-namespaces"]["spec"]["validations"][0]["expression"]
    assert "'kube-system'" in namespaces and "'runyard-system'" in namespaces
    rules = " ".join(v["expression"] for v in policies["runyard-pod-policy"]["spec"]["validations"])
    assert "privileged" in rules and "hostPID" in rules and "['/datasets']" in rules
    assert len(find(docs, "ValidatingAdmissionPolicyBinding")) == 2
    assert not find(documents(template("--set", "admissionPolicy.enabled=false")), "ValidatingAdmissionPolicy")


def test_user_roles_aggregate_to_builtin_roles() -> None:
    docs = documents(template())
    (edit,) = find(docs, "ClusterRole", "runyard-edit")
    (view,) = find(docs, "ClusterRole", "runyard-view")
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert _flatten(view["rules"])[("runyard.dev", "trainingruns")] == {"get", "list", "watch"}
    assert "patch" not in _flatten(edit["rules"])[("runyard.dev", "trainingruns/status")]


def test_operator_pod_is_restricted() -> None:
    docs = documents(template())
    (deploy,) = find(docs, "Deployment", "runyard")
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    assert deploy["spec"]["replicas"] == 1
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["image"] == "ghcr.io/runyard/runyard-operator:0.1.0"
    assert "--config=/etc/runyard/config.yaml" in container["args"]
    assert container["resources"]["requests"] and container["resources"]["limits"]


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["--set", "replicaCount=2"], "needs leaderElection.enabled"),
        (["--set", "unknownKey=1"], "additional properties"),
        (["--set", "operator.logFormat=xml"], "logFormat"),
        (["--set", "mlflow.unknown=1"], "additional properties"),
        (["--set", "config.tracking.mlflow.password.name=only-name"], "key"),
        (["--set", "watchNamespaces[0]=Not_A_Namespace"], "watchNamespaces"),
    ],
    ids=["replicas", "unknown-top", "log-format", "unknown-nested", "half-secret-ref", "bad-namespace"],
)
def test_schema_rejects(flags: list[str], error: str) -> None:
    res = helm("template", "x", str(CHART), *flags, check=False)
    assert res.returncode != 0 and error in res.stderr, res.stderr


def _closed(schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of objects with declared properties that do not set additionalProperties: false."""
    problems = []
    if schema.get("type") == "object" and "properties" in schema and schema.get("additionalProperties") is not False:
        problems.append(path or "/")
    if "description" not in schema and path:
        problems.append(f"{path} (no description)")
    for key, sub in (schema.get("properties") or {}).items():
        problems += _closed(sub, f"{path}/{key}")
    return problems


def test_schema_is_closed_and_described() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert _closed(schema) == []
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"])


def test_every_value_is_documented_and_readme_table_is_current() -> None:
    gen = _generator()
    text = (CHART / "values.yaml").read_text()
    documented = {row[0] for row in gen.documented_values(text)}

    def leaves(node: Any, prefix: str = "") -> set[str]:
        if isinstance(node, dict) and node and prefix not in documented:
            return set().union(*(leaves(v, f"{prefix}.{k}" if prefix else k) for k, v in node.items()))
        return {prefix}

    assert leaves(yaml.safe_load(text)) <= documented
    assert gen.values_table(text) in (CHART / "README.md").read_text(), "README values table stale: make generate"


def test_monitoring_objects() -> None:
    docs = documents(template("-f", str(CHART / "ci" / "servicemonitor-values.yaml")))
    (sm,) = find(docs, "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    (rule,) = find(docs, "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"RunyardTrainingRunsFailing", "RunyardGpusIdle", "RunyardOperatorDown"} <= set(alerts)
    assert "runyard_run_gpu_utilization_percent" in alerts["RunyardGpusIdle"]["expr"]
    assert alerts["RunyardGpusIdle"]["for"] == "1h"
    (dash,) = [d for d in find(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(dash["data"]["runyard-overview.json"])
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
    for metric in (
        "runyard_trainingruns",
        "runyard_trainingrun_time_to_running_seconds_bucket",
        "runyard_run_gpu_utilization_percent",
        "runyard_run_gpu_energy_joules_total",
        "runyard_run_gpus_allocated",
    ):
        assert metric in exprs


def test_helm_test_hook_curls_readyz() -> None:
    (pod,) = find(documents(template()), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["command"][-1] == "http://runyard-metrics.runyard-system.svc:8080/readyz"
