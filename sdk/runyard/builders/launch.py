"""How a replica's command is launched, shared by pod templates and local runs so both start ranks the same way.

PyTorch: a `python script.py` (or `python -m module`) command runs under `python -m torch.distributed.run`, which
reads every flag from the PET_* env Runyard injects and gives each process RANK, LOCAL_RANK and WORLD_SIZE, for any
`nprocPerNode`. Commands that launch themselves (`torchrun ...`, a shell script, an image entrypoint) run as written:
wrapping a launcher in another launcher would start the ranks twice.
"""

from __future__ import annotations

from pathlib import Path

from runyard.api.v1alpha1 import Framework

PYTHON_NAMES = frozenset({"python", "python3"})
TORCHRUN_MODULE = "torch.distributed.run"


def is_python(arg: str) -> bool:
    """`python`, `python3`, `python3.11`, `/usr/bin/python3`... (any CPython executable name)."""
    name = Path(arg).name
    return name in PYTHON_NAMES or (name.startswith("python3.") and name[8:].isdigit())


def _split_interpreter(argv: list[str]) -> tuple[list[str], list[str]] | None:
    """(`python` plus its own options, the program and its args), or None when there is no program to wrap.

    `python -c code` and a bare `python` have no script torchrun could run.
    """
    i = 1
    while i < len(argv) and argv[i].startswith("-") and argv[i] not in ("-m", "-c", "-"):
        i += 2 if argv[i] in ("-W", "-X", "-Q") else 1
    rest = argv[i:]
    if not rest or rest[0] in ("-c", "-"):
        return None
    return argv[:i], rest


def wrap_command(
    framework: Framework, command: list[str] | None, args: list[str] | None
) -> tuple[list[str] | None, list[str] | None]:
    """The container `command`/`args` a replica runs: `python X` becomes `python -m torch.distributed.run X` for PyTorch.

    `args` are untouched, so `command: [python]` with `args: [train.py, --lr, ...]` wraps as well.
    """
    if framework is not Framework.PYTORCH or not command or not is_python(command[0]):
        return command, args
    split = _split_interpreter([*command, *(args or [])])
    if split is None:
        return command, args
    interpreter, program = split
    module = ["--module", *program[1:]] if program[0] == "-m" else program
    wrapped = [*interpreter, "-m", TORCHRUN_MODULE, *module]
    # Keep the user's args as args (so `kubectl describe` shows them where they wrote them).
    n_args = len(args or [])
    if n_args and wrapped[-n_args:] == list(args or []):
        return wrapped[:-n_args], list(args or [])
    return wrapped, None


def launch_argv(framework: Framework, argv: list[str]) -> list[str]:
    """`wrap_command` for a flat argv (local runs)."""
    command, args = wrap_command(framework, argv, None)
    return [*(command or []), *(args or [])]
