"""`$(VAR)` expansion matches the kubelet's (k8s third_party/forked/golang/expansion test table), and local runs use it."""

from __future__ import annotations

from pathlib import Path

import pytest

from runyard.builders.expansion import expand, expand_argv, expand_env
from runyard.local import plan_local
from tests.unit.factories import make_run

KNOWN = {"VAR_A": "A", "VAR_B": "B", "VAR_C": "C", "VAR_EMPTY": ""}

# Cases from the kubelet's own expansion tests.
CASES = [
    ("whole string", "$(VAR_A)", "A"),
    ("repeat", "$(VAR_A)-$(VAR_A)", "A-A"),
    ("beginning", "$(VAR_A)-1", "A-1"),
    ("middle", "___$(VAR_B)___", "___B___"),
    ("end", "___$(VAR_C)", "___C"),
    ("compound", "$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
    ("escaped operator", "$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
    ("empty value", "foo$(VAR_EMPTY)bar", "foobar"),
    ("unknown kept verbatim", "foo$(VAR_Awhoops!)bar", "foo$(VAR_Awhoops!)bar"),
    ("unterminated reference", "$(VAR_A", "$(VAR_A"),
    ("lone operator at the end", "foo$", "foo$"),
    ("operator before a letter", "$VAR_A", "$VAR_A"),
    ("escaped twice", "$$$$(VAR_A)", "$$(VAR_A)"),
    ("empty reference", "$()", "$()"),
    ("nested parens stop at the first close", "$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
]


@pytest.mark.parametrize(("name", "text", "want"), CASES, ids=[c[0] for c in CASES])
def test_expand_like_the_kubelet(name: str, text: str, want: str) -> None:
    assert expand(text, KNOWN.get) == want


def test_env_sees_only_earlier_entries() -> None:
    env = expand_env(
        [
            {"name": "LATER_REF", "value": "$(FIRST)"},
            {"name": "FIRST", "value": "one"},
            {"name": "SECOND", "value": "$(FIRST)-two"},
            {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ]
    )
    assert env == {"LATER_REF": "$(FIRST)", "FIRST": "one", "SECOND": "one-two"}
    assert expand_argv(["--out=$(SECOND)", "$(MISSING)"], env) == ["--out=one-two", "$(MISSING)"]


def test_local_runs_expand_spec_env_and_args_as_pods_do(tmp_path: Path) -> None:
    run = make_run(
        "generic-small",
        command=["python", "train.py"],
        args=["--name=$(RUNYARD_RUN_NAME)", "--out=$(OUT_DIR)", "$$(LITERAL)"],
        env=[{"name": "OUT_DIR", "value": "$(RUNYARD_ARTIFACT_DIR)/out-$(RUNYARD_REPLICA_INDEX)"}],
    )
    plan = plan_local(run, base_port=40000, run_dir=tmp_path, python="/py")
    for process in plan:
        want_dir = f"{tmp_path}/artifacts/{process.label}/out-{process.index}"
        assert process.env["OUT_DIR"] == want_dir
        assert process.argv == ["/py", "train.py", "--name=generic-small", f"--out={want_dir}", "$(LITERAL)"]
