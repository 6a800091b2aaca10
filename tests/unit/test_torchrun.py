"""Real torchrun: the rendered PET_* env of a 2-node run drives two local torchrun agents through a gloo all_reduce."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runyard.builders import LocalAddressing, build_env
from runyard.ports import free_block
from tests.unit.factories import make_run

SCRIPT = """
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
value = torch.tensor([dist.get_rank() + 1.0])
dist.all_reduce(value)
print(f"rank={dist.get_rank()} world={dist.get_world_size()} sum={value.item():g}", flush=True)
dist.destroy_process_group()
"""


@pytest.mark.torch
@pytest.mark.slow
def test_two_torchrun_nodes_all_reduce(tmp_path: Path) -> None:
    script = tmp_path / "allreduce.py"
    script.write_text(SCRIPT)
    run = make_run("pytorch-small", nprocPerNode=1)
    addressing = LocalAddressing(base_port=free_block(10))
    procs = []
    for index in range(2):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PET_", "MASTER_", "RANK", "WORLD_SIZE"))}
        env |= {e["name"]: e["value"] for e in build_env(run, "node", index, addressing) if "value" in e}
        env["OMP_NUM_THREADS"] = "1"
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "torch.distributed.run", str(script)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            outputs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out
    joined = "\n".join(outputs)
    assert "rank=0 world=2 sum=3" in joined and "rank=1 world=2 sum=3" in joined, joined
