"""How a replica's command is launched: the framework profile decides, for pods and for local runs alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runyard import frameworks
from runyard.builders import LocalAddressing
from runyard.frameworks.base import is_python
from runyard.frameworks.pytorch import wrap_command
from runyard_operator.observe import elastic_failure
from tests.unit.factories import make_run

TORCHRUN = ["-m", "torch.distributed.run"]

CASES = [
    ("script", ["python", "train.py"], None, ["python", *TORCHRUN, "train.py"], None),
    ("script with args kept as args", ["python", "train.py"], ["--lr", "1"], ["python", *TORCHRUN, "train.py"], ["--lr", "1"]),
    ("interpreter only, script in args", ["python3"], ["train.py", "-x"], ["python3", *TORCHRUN], ["train.py", "-x"]),
    ("module", ["python", "-m", "pkg.train", "--a"], None, ["python", *TORCHRUN, "--module", "pkg.train", "--a"], None),
    ("interpreter options stay in front", ["/usr/bin/python3.11", "-u", "-X", "dev", "t.py"], None,
     ["/usr/bin/python3.11", "-u", "-X", "dev", *TORCHRUN, "t.py"], None),
    ("python -c cannot be wrapped", ["python", "-c", "print(1)"], None, ["python", "-c", "print(1)"], None),
    ("torchrun launches itself", ["torchrun", "--nproc-per-node=2", "t.py"], None, ["torchrun", "--nproc-per-node=2", "t.py"], None),
    ("a shell script launches itself", ["bash", "-c", "torchrun t.py"], None, ["bash", "-c", "torchrun t.py"], None),
    ("image entrypoint", None, ["--epochs", "3"], None, ["--epochs", "3"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "command", "args", "want_command", "want_args"), CASES, ids=[c[0] for c in CASES])
def test_pytorch_commands_run_under_torchrun(
    name: str,
    command: list[str] | None,
    args: list[str] | None,
    want_command: list[str] | None,
    want_args: list[str] | None,
) -> None:
    assert wrap_command(command, args) == (want_command, want_args)


@pytest.mark.parametrize("case", ["tensorflow-small", "jax-small", "generic-small"])
def test_other_frameworks_run_as_written(case: str) -> None:
    run = make_run(case)
    role = frameworks.roles_of(run.spec)[0]
    launch = frameworks.of(run.spec).launch(run, role, ["python", "train.py"], ["-a"])
    assert (launch.command, launch.args, launch.error_file) == (["python", "train.py"], ["-a"], False)


def test_local_argv_is_the_same_launch() -> None:
    run = make_run("pytorch-small")
    argv = frameworks.of(run.spec).local_argv(
        run, "node", ["python", "t.py", "--x"], Path("/tmp"), LocalAddressing(30000)
    )
    assert argv == ["python", *TORCHRUN, "t.py", "--x"]


@pytest.mark.parametrize("name", ["python", "python3", "python3.11", "/opt/conda/bin/python3.12"])
def test_python_names(name: str) -> None:
    assert is_python(name)


@pytest.mark.parametrize("name", ["pythonista", "python3.x", "ipython", "torchrun"])
def test_not_python_names(name: str) -> None:
    assert not is_python(name)


def _elastic(exitcode: int) -> str:
    text = (
        "ChildFailedError: \n====\ntrain.py FAILED\n----\nRoot Cause (first observed failure):\n[0]:\n"
        f"  rank      : 3 (local_rank: 1)\n  exitcode  : {exitcode} (pid: 10)\n  error_file: <N/A>\n"
    )
    return json.dumps({"message": {"message": text, "extraInfo": {"timestamp": "1"}}})


def test_torchrun_error_file_gives_the_workers_exit_code() -> None:
    assert elastic_failure(_elastic(-9)) == (137, "torchrun: rank 3 failed with signal 9")
    assert elastic_failure(_elastic(2)) == (2, "torchrun: rank 3 failed with exit code 2")


@pytest.mark.parametrize("message", ["", "Traceback ...\nValueError: x", '{"message": "not elastic"}', "{broken"])
def test_other_termination_messages_are_not_torchrun_failures(message: str) -> None:
    assert elastic_failure(message) is None


def test_torchrun_summary_in_the_log_tail_gives_the_workers_exit_code() -> None:
    """No error file for a signalled worker: the summary torchrun prints is in the FallbackToLogsOnError tail."""
    tail = (
        '  File "/opt/runyard/lib/torch/distributed/launcher/api.py", line 386, in launch_agent\n'
        "    raise ChildFailedError(\ntorch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
        "====\nexamples/pytorch/train_digits.py FAILED\n----\nFailures:\n  <NO_OTHER_FAILURES>\n----\n"
        "Root Cause (first observed failure):\n[0]:\n  time      : 2026-12-01_01:17:14\n  host      : h\n"
        "  rank      : 1 (local_rank: 0)\n  exitcode  : -9 (pid: 8)  (SIGKILL)\n  error_file: <N/A>\n"
        "  traceback : Signal 9 (SIGKILL) received by PID 8\n====\n"
    )
    assert elastic_failure(tail) == (137, "torchrun: rank 1 failed with signal 9")
