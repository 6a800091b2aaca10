"""Checkpoint-aware stop: a real SIGTERM to a real process sets should_stop and runs on_stop, so code can save."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from runyard.builders import build_pod_template
from tests.unit.factories import CTX, make_run

TRAINER = textwrap.dedent(
    """
    import sys, time
    import runyard
    saved = []
    @runyard.on_stop
    def save():
        saved.append("checkpoint")
    ctx = runyard.context()
    print("ready", flush=True)
    step = 0
    while not ctx.should_stop():
        step += 1
        time.sleep(0.01)
    print(f"stopped at step {step}, saved {saved}", flush=True)
    sys.exit(0)
    """
)


def test_sigterm_lets_the_loop_save_and_exit_cleanly(tmp_path: Path) -> None:
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "saved ['checkpoint']" in out


def test_without_asking_sigterm_keeps_its_default(tmp_path: Path) -> None:
    script = tmp_path / "plain.py"
    script.write_text("import runyard, time\nprint('ready', flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM


def test_stop_grace_period_sets_the_pods_termination_grace() -> None:
    def grace(**policy: object) -> object:
        run = make_run("pytorch-small", runPolicy=policy)
        return build_pod_template(run, "node", CTX)["spec"].get("terminationGracePeriodSeconds")

    assert grace() is None  # Kubernetes' default
    assert grace(stopGracePeriodSeconds=300) == 300
    assert grace(stopGracePeriodSeconds=0) == 0
