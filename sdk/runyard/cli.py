"""The `runyard` command line; each command imports what it needs lazily so `runyard --help` stays fast."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="runyard",
    help="Runyard: distributed training runs (PyTorch, TensorFlow, MPI, JAX) on Kubernetes.",
    no_args_is_help=True,
    add_completion=False,
)

FileOption = Annotated[
    list[Path],
    typer.Option("-f", "--file", exists=True, dir_okay=False, help="TrainingRun YAML file (repeatable)."),
]

# `render` output must be deterministic, like `helm template`: the uid and SSH keys the real operator would
# get from the API server and generate at random are fixed placeholders.
RENDER_UID = "00000000-0000-0000-0000-000000000000"
RENDER_SSH_PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nPLACEHOLDER\n-----END OPENSSH PRIVATE KEY-----\n"
RENDER_SSH_PUBLIC_KEY = "ssh-ed25519 PLACEHOLDER runyard-render\n"
RENDER_NOTE = (
    "# Rendered by `runyard render`: metadata.uid ({uid}) and MPI SSH keys are placeholders;\n"
    "# the operator uses the real uid and generates a keypair per run.\n"
)


def _fail(message: str) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code=1)


@app.command()
def validate(files: FileOption) -> None:
    """Check TrainingRun manifests offline: schema, cross-field rules, names. Exit code 1 on any problem."""
    from runyard.validation import load_manifests, validate_manifest

    failed = False
    for file in files:
        try:
            docs = load_manifests(file)
        except ValueError as exc:
            typer.echo(f"{file}: {exc}")
            failed = True
            continue
        for doc in docs:
            problems = validate_manifest(doc)
            name = (doc.get("metadata") or {}).get("name", "<unnamed>")
            for problem in problems:
                typer.echo(f"{file}: {problem}")
            if not problems:
                typer.echo(f"{file}: ok ({doc.get('kind', '?')} {name})")
            failed = failed or bool(problems)
    if failed:
        raise typer.Exit(code=1)


@app.command()
def render(
    files: FileOption,
    namespace: Annotated[
        str | None, typer.Option("-n", "--namespace", help="Namespace for the objects (default: manifest's).")
    ] = None,
) -> None:
    """Print the Kubernetes objects the operator would create for each TrainingRun, as multi-document YAML."""
    from runyard.api import TrainingRun
    from runyard.builders import BuildContext, build_children
    from runyard.validation import dump_manifests, load_manifests, validate_manifest

    ctx = BuildContext(ssh_private_key=RENDER_SSH_PRIVATE_KEY, ssh_public_key=RENDER_SSH_PUBLIC_KEY)
    objects = []
    for file in files:
        for doc in load_manifests(file):
            problems = validate_manifest(doc)
            if problems:
                raise _fail("\n".join(f"{file}: {p}" for p in problems))
            run = TrainingRun.model_validate(doc)
            run.metadata.uid = RENDER_UID
            if namespace:
                run.metadata.namespace = namespace
            objects += build_children(run, ctx)
    typer.echo(RENDER_NOTE.format(uid=RENDER_UID) + dump_manifests(objects), nl=False)


def main() -> None:
    """Console-script entry point."""
    app()
