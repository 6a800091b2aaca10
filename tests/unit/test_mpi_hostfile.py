"""Real mpirun reads the hostfile build_hostfile renders for a local run."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from runyard.builders import LocalAddressing
from runyard.frameworks.ssh import build_hostfile
from tests.unit.factories import make_run


@pytest.mark.mpi
def test_mpirun_accepts_rendered_openmpi_hostfile(tmp_path: Path) -> None:
    mpirun = shutil.which("mpirun")
    assert mpirun is not None, "mpirun not installed: hack/install-system-deps.sh installs OpenMPI"
    hostfile = tmp_path / "hostfile"
    hostfile.write_text(build_hostfile(make_run("mpi-small"), LocalAddressing(base_port=40000, hostname="localhost")))
    assert hostfile.read_text() == "localhost slots=2\n"
    result = subprocess.run(
        [mpirun, "--allow-run-as-root", "--oversubscribe", "--hostfile", str(hostfile), "-n", "2", "hostname"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [socket.gethostname()] * 2
