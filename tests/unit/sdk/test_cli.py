"""The `runyard validate` and `runyard render` commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from runyard.cli import RENDER_UID, app

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
runner = CliRunner()


def test_validate_ok_and_problems() -> None:
    ok = runner.invoke(app, ["validate", "-f", str(EXAMPLES / "pytorch-ddp.yaml")])
    assert ok.exit_code == 0 and ok.output.strip().endswith("ok (TrainingRun pytorch-ddp)")
    bad_file = EXAMPLES / "invalid" / "reserved-env.yaml"
    bad = runner.invoke(app, ["validate", "-f", str(EXAMPLES / "generic.yaml"), "-f", str(bad_file)])
    assert bad.exit_code == 2  # usage/validation error
    assert f"{bad_file}: spec.env[1].name: WORLD_SIZE is reserved" in bad.output
    assert "generic.yaml: ok" in bad.output


def test_render_is_deterministic_multi_doc_yaml() -> None:
    args = ["render", "-f", str(EXAMPLES / "mpi-allreduce.yaml"), "--namespace", "ml"]
    first, second = runner.invoke(app, args), runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.output == second.output
    assert first.output.startswith("# Rendered by `runyard render`")
    docs = list(yaml.safe_load_all(first.output))
    assert [(d["kind"], d["metadata"].get("name") or d["metadata"]["generateName"]) for d in docs] == [
        ("Service", "mpi-allreduce"),
        ("ConfigMap", "mpi-allreduce-mpi"),
        ("Secret", "mpi-allreduce-mpi-ssh-"),
        ("Job", "mpi-allreduce-launcher"),
        ("Job", "mpi-allreduce-worker"),
    ]
    assert {d["metadata"]["namespace"] for d in docs} == {"ml"}
    assert docs[0]["metadata"]["ownerReferences"][0]["uid"] == RENDER_UID


def test_render_refuses_invalid_manifest() -> None:
    result = runner.invoke(app, ["render", "-f", str(EXAMPLES / "invalid" / "zero-replicas.yaml")])
    assert result.exit_code == 2


def test_help_imports_no_heavy_modules() -> None:
    code = (
        "import sys; from runyard import cli; "
        "heavy = [m for m in ('pydantic', 'yaml', 'runyard.api', 'runyard.builders') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_root_image_under_the_default_security_context_is_a_warning_not_an_error(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from runyard import cli

    doc = {
        "apiVersion": "runyard.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": "stock"},
        "spec": {"framework": "pytorch", "image": "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
                 "command": ["python", "t.py"], "replicas": {"node": {"replicas": 2}}},
    }  # fmt: skip
    path = tmp_path / "stock.yaml"
    path.write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(cli.app, ["validate", "-f", str(path)])
    assert result.exit_code == 0, result.output
    assert "warning: spec.securityContext: pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime runs as root" in result.output
    doc["spec"]["securityContext"] = {"runAsUser": 1000}
    path.write_text(yaml.safe_dump(doc))
    assert "warning" not in CliRunner().invoke(cli.app, ["validate", "-f", str(path)]).output


def test_render_merges_the_templates_of_examples_templates(tmp_path: Path) -> None:
    templates = EXAMPLES / "templates"
    run = str(templates / "generic-from-template.yaml")
    args = ["render", "-f", run, "--template", str(templates / "local-real-node.yaml")]
    args += ["--template", str(templates / "platform-default.yaml")]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    (job,) = [d for d in yaml.safe_load_all(out.output) if d["kind"] == "Job"]
    pod = job["spec"]["template"]["spec"]
    (trainer,) = [c for c in pod["containers"] if c["name"] == "trainer"]
    assert trainer["image"] == "localhost/runyard/examples:dev"  # the team template
    assert pod["nodeSelector"] == {"runyard.dev/real-node": "true"}
    env = {e["name"]: e.get("value") for e in trainer["env"]}
    assert env["RUNYARD_EXAMPLE_GREETING"] == "hello from the template"
    # the platform default's store: the artifacts sidecar syncs to it
    assert any("s3://runyard-runs/runs" in str(c) for c in pod.get("containers", []) + pod.get("initContainers", []))

    # Without the team template the run's templateRef is unresolved; a broken lock is refused, naming the field.
    missing = runner.invoke(app, ["render", "-f", run, "--template", str(templates / "platform-default.yaml")])
    assert (
        missing.exit_code == 2 and "spec.templateRef: TrainingRunTemplate local-real-node not found" in missing.output
    )
    bad = yaml.safe_load((templates / "generic-from-template.yaml").read_text())
    bad["spec"]["nodeSelector"] = {"pool": "other"}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    locked = runner.invoke(
        app, ["render", "-f", str(tmp_path / "bad.yaml"), "--template", str(templates / "local-real-node.yaml")]
    )
    assert locked.exit_code == 2
    assert "spec.nodeSelector: locked by TrainingRunTemplate local-real-node" in locked.output
