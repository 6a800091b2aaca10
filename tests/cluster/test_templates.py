"""Run templates on the local control plane: defaults reach the Jobs, locks refuse runs naming the field, a default
cluster template applies to every run, and what a run was started with does not change under it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.cluster.conftest import OperatorProcess, Runs, training_run
from tests.conftest import Cluster
from tests.operator_fixtures import OPERATOR_S3_ENV, session_operator_paused

GROUP, VERSION = "runyard.dev", "v1alpha1"


def _template(name: str, defaults: dict[str, Any], locks: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingRunTemplate",
        "metadata": {"name": name},
        "spec": {"description": "test", "defaults": defaults, **({"locks": locks} if locks else {})},
    }


def _trainer(runs: Runs, run: str) -> Any:
    (job,) = runs.jobs(run)
    pod = job.spec.template.spec
    return pod, next(c for c in pod.containers if c.name == "trainer")


def _failed_with(runs: Runs, name: str, reason: str) -> dict[str, Any]:
    status = runs.wait_phase(name, "Failed")
    (failed,) = [c for c in status["conditions"] if c["type"] == "Failed"]
    assert failed["reason"] == reason, status
    assert runs.jobs(name) == [], "a refused run creates nothing"
    return status


def test_namespaced_template_fills_the_run_and_its_locks_refuse_naming_the_field(runs: Runs, cluster: Cluster) -> None:
    custom = client.CustomObjectsApi(runs.api.api_client)
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        runs.namespace,
        "trainingruntemplates",
        _template(
            "team",
            {
                "image": "ghcr.io/runyard/examples:0.1.0",
                "nodeSelector": {"runyard.dev/pool": "gpu"},
                "env": [{"name": "HF_HOME", "value": "/cache/hf"}, {"name": "LR", "value": "0.1"}],
                "runPolicy": {"activeDeadlineSeconds": 3600},
                "tracking": {"tags": {"team": "a"}},
            },
            {"fields": ["nodeSelector"], "imagePrefixes": ["ghcr.io/runyard/"]},
        ),
    )
    run = training_run("filled", templateRef={"name": "team"}, env=[{"name": "LR", "value": "0.2"}])
    del run["spec"]["image"]  # the template names it
    runs.create(run)
    status = runs.wait_phase("filled", "Succeeded", timeout=90)
    assert status.get("template", {}).get("name") == "team", status
    (applied,) = status["template"]["applied"]
    assert (applied["kind"], applied["generation"], applied["locks"]["fields"]) == (
        "TrainingRunTemplate",
        1,
        ["nodeSelector"],
    )
    pod, trainer = _trainer(runs, "filled")
    assert trainer.image == "ghcr.io/runyard/examples:0.1.0"
    assert pod.node_selector == {"runyard.dev/pool": "gpu"}
    env = {e.name: e.value for e in trainer.env}
    assert env["HF_HOME"] == "/cache/hf" and env["LR"] == "0.2"  # the run's own entry wins, by name
    table = cluster.kubectl("get", "tr", "filled", "-n", runs.namespace).stdout
    assert "TEMPLATE" in table and " team " in table

    # The template changes; the run keeps what it was started with (recorded in its status).
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, runs.namespace, "trainingruntemplates", "team", {"spec": {"description": "edited"}}
    )
    assert runs.status("filled")["template"]["applied"][0]["generation"] == 1

    # Locks: the field and the template are named, and nothing is created.
    runs.create(training_run("elsewhere", templateRef={"name": "team"}, nodeSelector={"runyard.dev/pool": "cpu"}))
    status = _failed_with(runs, "elsewhere", "TemplateLocked")
    assert "spec.nodeSelector: locked by TrainingRunTemplate team" in status["message"]
    runs.create(training_run("foreign", templateRef={"name": "team"}, image="docker.io/library/python:3.11"))
    status = _failed_with(runs, "foreign", "TemplateLocked")
    assert "spec.image: docker.io/library/python:3.11 is not allowed by TrainingRunTemplate team" in status["message"]
    assert status["failure"]["category"] == "Config"
    warnings = [e for e in runs.wait_events("foreign", "TemplateLocked") if e.reason == "TemplateLocked"]
    assert warnings[0].type == "Warning"

    runs.create(training_run("typo", templateRef={"name": "no-such-template"}))
    status = _failed_with(runs, "typo", "TemplateNotFound")
    assert (
        f"spec.templateRef: TrainingRunTemplate no-such-template not found in namespace {runs.namespace}"
        in (status["message"])
    )


def test_api_server_refuses_a_run_without_image_or_template(runs: Runs) -> None:
    run = training_run("bare")
    del run["spec"]["image"]
    with pytest.raises(ApiException) as err:
        runs.create(run)
    assert err.value.status == 422
    assert "spec.image is required unless spec.templateRef names a template that sets it" in str(err.value.body)


@contextlib.contextmanager
def _default_template(api: Any, name: str, defaults: dict[str, Any], locks: dict[str, Any]) -> Iterator[None]:
    custom = client.CustomObjectsApi(api)
    body = {
        **_template(name, defaults, locks),
        "kind": "ClusterTrainingRunTemplate",
        "metadata": {"name": name, "labels": {"runyard.dev/default-template": "true"}},
    }
    custom.create_cluster_custom_object(GROUP, VERSION, "clustertrainingruntemplates", body)
    try:
        yield
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, "clustertrainingruntemplates", name)


def test_default_cluster_template_applies_to_every_run_and_cannot_be_escaped(
    cluster: Cluster, api: Any, namespace: str, crd: None, tmp_path: Path
) -> None:
    runs = Runs(api, namespace)
    toleration = {"key": "runyard.dev/reserved", "operator": "Exists", "effect": "NoSchedule"}
    # Its own operator: the session operator must not see a default template that would apply to other tests' runs.
    with session_operator_paused():
        operator = OperatorProcess(cluster.kubeconfig, tmp_path, env=OPERATOR_S3_ENV)
        name = f"platform-{namespace[-6:]}"
        with _default_template(
            api,
            name,
            {"tolerations": [toleration], "env": [{"name": "PLATFORM", "value": "yes"}]},
            {"fields": ["tolerations"]},
        ):
            operator.start()
            try:
                runs.create(training_run("plain"))
                status = runs.wait_phase("plain", "Succeeded", timeout=90)
                assert status["template"]["name"] == name
                pod, trainer = _trainer(runs, "plain")
                assert any(t.key == "runyard.dev/reserved" for t in pod.tolerations or [])
                assert {e.name: e.value for e in trainer.env}["PLATFORM"] == "yes"

                # A namespace's own template cannot lift the platform's lock.
                client.CustomObjectsApi(api).create_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    "trainingruntemplates",
                    _template("loose", {"tolerations": [{"operator": "Exists"}]}),
                )
                runs.create(training_run("escape", templateRef={"name": "loose"}))
                status = _failed_with(runs, "escape", "TemplateLocked")
                assert (
                    f"spec.tolerations: locked by ClusterTrainingRunTemplate {name}" in status["message"]
                    and "(TrainingRunTemplate loose sets it)" in status["message"]
                )
            finally:
                operator.stop()
