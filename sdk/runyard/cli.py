"""The `runyard` command line; each command imports what it needs lazily so `runyard --help` stays fast.

Exit codes: 0 ok, 1 the run failed, 2 usage or validation error, 3 not found, 4 timeout, 5 API error (the cluster
cannot be used: unusable kubeconfig or context, API server unreachable or refusing), 70 internal error (a bug).
Every error is one line on stderr, `error: ...`; `_Group` turns exceptions into those lines and exit codes, in
one place (`_report`), so commands just raise.
"""

from __future__ import annotations

import math
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from runyard.exceptions import (
    ClientError,
    LocalRunError,
    NotFoundError,
    RunFailedError,
    ValidationFailedError,
    WaitTimeoutError,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from runyard.api import FailureInfo, TrainingRun, TrainingRunStatus
    from runyard.client import Client

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_TIMEOUT = 4
EXIT_API = 5
EXIT_INTERNAL = 70  # sysexits' EX_SOFTWARE

# Typer raises click's exceptions: those of the click it vendors (newer typer) or of click itself (older).
_click_errors: Any = sys.modules[typer.BadParameter.__module__]


class CliError(Exception):
    """An error a command reports as one line, `error: <message>`, and exits with `code`."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


# Most specific first: the exit code of the first class the error is an instance of.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (RunFailedError, EXIT_RUN_FAILED),
    (LocalRunError, EXIT_RUN_FAILED),
    (ValidationFailedError, EXIT_USAGE),
    (NotFoundError, EXIT_NOT_FOUND),
    (WaitTimeoutError, EXIT_TIMEOUT),
    (ClientError, EXIT_API),
    (FileNotFoundError, EXIT_NOT_FOUND),
    (NotADirectoryError, EXIT_NOT_FOUND),
    (OSError, EXIT_USAGE),  # a path given on the command line: a directory, no permission...
    (_click_errors.UsageError, EXIT_USAGE),
)


def _message(exc: BaseException) -> str:
    if isinstance(exc, _click_errors.UsageError):
        ctx = exc.ctx
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        return f"{exc.format_message()}{hint}"
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    text = str(exc)
    if isinstance(exc, ValidationFailedError):
        text += "".join(f"\n  {p}" for p in exc.problems if p not in text)
    return text


def _report(exc: Exception) -> typer.Exit:
    """Print `exc` as one `error:` line on stderr; the Exit with its documented code (EXIT_CODES).

    Anything else is a bug: one line too, exit code 70, and the traceback only with RUNYARD_DEBUG=1."""
    code = exc.code if isinstance(exc, CliError) else next((c for t, c in EXIT_CODES if isinstance(exc, t)), None)
    if code is None:
        if os.environ.get("RUNYARD_DEBUG"):
            raise exc
        name = type(exc).__name__
        typer.echo(f"error: internal error: {name}: {exc} (a bug; RUNYARD_DEBUG=1 shows the traceback)", err=True)
        return typer.Exit(code=EXIT_INTERNAL)
    typer.echo(f"error: {_message(exc)}", err=True)
    return typer.Exit(code=code)


# Control flow, not errors: exits, Ctrl-C aborts, `runyard` alone printing help, `| head` closing the pipe.
_PASS_THROUGH: tuple[type[BaseException], ...] = (
    typer.Exit,
    typer.Abort,
    getattr(_click_errors, "NoArgsIsHelpError", typer.Exit),  # click >= 8.2
    BrokenPipeError,
)


class _Group(TyperGroup):
    """The `runyard` group: every error of parsing or of a command goes through `_report`."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # click's Context: vendored by typer or not
        try:
            return super().parse_args(ctx, args)
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            raise _report(exc) from exc

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            raise _report(exc) from exc


app = typer.Typer(
    name="runyard",
    help=(
        "Runyard: distributed training runs (PyTorch, TensorFlow, MPI, JAX) on Kubernetes, or locally.\n\n"
        "Exit codes: 0 ok, 1 run failed, 2 usage/validation error, 3 not found, 4 timeout, "
        "5 API error (kubeconfig, connection, API server), 70 internal error."
    ),
    cls=_Group,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)

FileOption = Annotated[
    list[Path],
    typer.Option("-f", "--file", exists=True, dir_okay=False, help="TrainingRun YAML file (repeatable)."),
]


def _check_namespace(value: str | None) -> str | None:
    from runyard.validation import namespace_problem

    problem = None if value is None else namespace_problem(value)
    if problem:
        raise typer.BadParameter(problem)
    return value


def _check_name(value: str) -> str:
    from runyard.validation import run_name_problem

    problem = run_name_problem(value)
    if problem:
        raise typer.BadParameter(problem)
    return value


def _check_names(values: list[str]) -> list[str]:
    return [_check_name(value) for value in values]


def _check_seconds(value: float) -> float:
    if not math.isfinite(value):  # `min=` lets `inf` through, which time.sleep() and timeouts reject later
        raise typer.BadParameter(f"{value} is not a finite number of seconds")
    return value


def _check_phase(phase: str | None) -> str | None:
    from runyard.api import Phase

    if phase is not None and phase not in {p.value for p in Phase}:
        raise typer.BadParameter(f"unknown phase {phase!r}; one of {', '.join(p.value for p in Phase)}")
    return phase


def _complete_names(ctx: typer.Context, incomplete: str) -> list[str]:
    # Shell completion must never fail or hang: any problem just means no suggestions.
    try:
        client = _client(ctx)
        return [r.name for r in client.list() if r.name.startswith(incomplete)]
    except Exception:
        return []


NameArg = Annotated[
    str, typer.Argument(help="Name of the TrainingRun.", autocompletion=_complete_names, callback=_check_name)
]
KubeconfigOption = Annotated[
    Path | None, typer.Option("--kubeconfig", help="kubeconfig file (default $KUBECONFIG, ~/.kube/config, in-cluster).")
]
ContextOption = Annotated[str | None, typer.Option("--context", help="kubeconfig context (default: current).")]
NamespaceOption = Annotated[
    str | None,
    typer.Option(
        "-n", "--namespace", help="Namespace (default: the context's, else `default`).", callback=_check_namespace
    ),
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=0, callback=_check_seconds, help="Seconds; 0 waits forever.")
]


class Output(StrEnum):
    """Formats of `get` and `list`."""

    table = "table"
    wide = "wide"
    json = "json"
    yaml = "yaml"


# `render` output must be deterministic, like `helm template`: the uid and SSH keys the real operator would
# get from the API server and generate at random are fixed placeholders.
RENDER_UID = "00000000-0000-0000-0000-000000000000"
RENDER_SSH_PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nPLACEHOLDER\n-----END OPENSSH PRIVATE KEY-----\n"
RENDER_SSH_PUBLIC_KEY = "ssh-ed25519 PLACEHOLDER runyard-render\n"
RENDER_NOTE = (
    "# Rendered by `runyard render`: metadata.uid ({uid}) and MPI SSH keys are placeholders;\n"
    "# the operator uses the real uid and generates a keypair per run.\n"
)


@app.callback()
def _global(
    ctx: typer.Context,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Runyard: distributed training runs on Kubernetes, or locally."""
    ctx.obj = {"kubeconfig": kubeconfig, "context": context, "namespace": namespace}


def _client(
    ctx: typer.Context,
    kubeconfig: Path | None = None,
    context: str | None = None,
    namespace: str | None = None,
) -> Client:
    """A Client from the command's options, falling back to the global ones (`runyard -n ns get x` and
    `runyard get x -n ns` both work)."""
    from runyard.client import Client

    root = ctx.find_root().obj or {}
    return Client(
        kubeconfig=kubeconfig or root.get("kubeconfig"),
        context=context or root.get("context"),
        namespace=namespace or root.get("namespace"),
    )


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    # Pipes get a wide, colourless console so tables are not wrapped at 80 columns.
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 200, highlight=False)


# --- formatting -------------------------------------------------------------------------------------


def _age(timestamp: str | None) -> str:
    from datetime import UTC, datetime

    if not timestamp:
        return "-"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "-"
    return _duration((datetime.now(UTC) - then).total_seconds())


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60}s" if seconds < 600 else f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{(seconds % 3600) // 60}m"
    return f"{seconds // 86400}d"


def _created(run: TrainingRun) -> str | None:
    extra = run.metadata.model_extra or {}
    value = extra.get("creationTimestamp")
    return str(value) if value else None


def _progress(run: TrainingRun) -> str:
    progress = run.status.progress if run.status else None
    return (progress.summary or str(progress.step)) if progress else "-"


def _eta(run: TrainingRun) -> str:
    """Time left, counted from now to status.progress.eta (not the operator's `remaining`, which was as of a report)."""
    from datetime import UTC, datetime

    status = run.status
    progress = status.progress if status else None
    if not progress or not status or (status.phase and status.phase.value in ("Succeeded", "Failed")):
        return "-"
    if progress.eta is None:
        return progress.remaining or "-"
    try:
        eta = datetime.fromisoformat(progress.eta.replace("Z", "+00:00"))
    except ValueError:
        return "-"
    return _duration((eta - datetime.now(UTC)).total_seconds())


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _row(run: TrainingRun, wide: bool) -> list[str]:
    status = run.status
    phase = status.phase.value if status and status.phase else "-"
    ready = f"{status.ready_replicas or 0}/{status.total_replicas}" if status and status.total_replicas else "-"
    row = [
        run.metadata.name or "-",
        run.spec.framework,
        phase,
        ready,
        str(status.restarts or 0) if status else "0",
        str(status.gpus) if status and status.gpus is not None else "-",
        _progress(run),
        _eta(run),
        _age(_created(run)),
    ]
    if wide:
        gpu = status.gpu if status else None
        tracking = status.tracking.url if status and status.tracking and status.tracking.url else "-"
        row += [
            run.metadata.namespace or "-",
            ",".join(status.nodes or []) if status and status.nodes else "-",
            _pct(gpu.avg_utilization if gpu else None),
            tracking,
            (status.message or "-") if status else "-",
        ]
    return row


HEADERS = ["NAME", "FRAMEWORK", "PHASE", "READY", "RESTARTS", "GPUS", "PROGRESS", "ETA", "AGE"]
WIDE_HEADERS = [*HEADERS, "NAMESPACE", "NODES", "GPU-UTIL", "TRACKING", "MESSAGE"]


def _text_table(headers: list[str], rows: list[list[str]]) -> str:
    """kubectl-style plain columns (scripts can `awk` them; no colours, no wrapping)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [
        "   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in [headers, *rows]
    ]
    return "\n".join(lines)


def _print_runs(runs: list[TrainingRun], output: Output, *, single: bool = False) -> None:
    if output in (Output.json, Output.yaml):
        manifests = [r.to_manifest() for r in runs]
        doc: Any = manifests[0] if single else {"apiVersion": "v1", "kind": "List", "items": manifests}
        if output is Output.json:
            import json

            typer.echo(json.dumps(doc, indent=2))
        else:
            import yaml

            typer.echo(yaml.safe_dump(doc, sort_keys=False), nl=False)
        return
    if not runs:
        typer.echo("No TrainingRuns found.", err=True)
        return
    wide = output is Output.wide
    typer.echo(_text_table(WIDE_HEADERS if wide else HEADERS, [_row(r, wide) for r in runs]))


# --- manifests -------------------------------------------------------------------------------------


def _documents(file: Path) -> list[dict[str, Any]]:
    """Every document of a manifest file; ValidationFailedError naming the file when it holds none or is not YAML."""
    from runyard.validation import load_manifests

    try:
        docs = load_manifests(file)
    except ValueError as exc:
        raise ValidationFailedError(f"{file}: {exc}", [str(exc)]) from exc
    if not docs:
        problem = "no TrainingRun in it (the file is empty or only comments)"
        raise ValidationFailedError(f"{file}: {problem}", [problem])
    return docs


def _doc_name(doc: dict[str, Any]) -> str:
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return str(name) if name not in (None, "") else "<unnamed>"


def _located(files: list[Path]) -> list[tuple[str, dict[str, Any]]]:
    """(where, document) of every document of every file: `FILE`, or `FILE (document N)` in multi-document files."""
    located = []
    for file in files:
        docs = _documents(file)
        located += [(f"{file} (document {i + 1})" if len(docs) > 1 else str(file), doc) for i, doc in enumerate(docs)]
    return located


def _renamed(doc: dict[str, Any], name: str) -> dict[str, Any]:
    metadata = doc.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        return doc  # validation reports `metadata`
    return {**doc, "metadata": {**(metadata or {}), "name": name}}


def _check_manifest(where: str, doc: dict[str, Any]) -> None:
    from runyard.validation import validate_manifest

    problems = [str(p) for p in validate_manifest(doc)]
    if problems:
        raise ValidationFailedError(f"{where}: invalid TrainingRun {_doc_name(doc)}: " + "; ".join(problems), problems)


def _runs(files: list[Path], name: str | None = None, *, one: bool = False) -> list[dict[str, Any]]:
    """The documents of every file, each a valid TrainingRun (with `name`, if given, as metadata.name); `one`:
    exactly one document."""
    located = _located(files)
    if one and len(located) != 1:
        problem = f"expected one TrainingRun document, found {len(located)}"
        raise ValidationFailedError(f"{files[0]}: {problem}", [problem])
    if name is not None:
        if len(located) != 1:
            raise CliError(f"--name needs exactly one TrainingRun document; the files hold {len(located)}")
        located = [(located[0][0], _renamed(located[0][1], name))]
    for where, doc in located:
        _check_manifest(where, doc)
    return [doc for _, doc in located]


# --- offline commands -------------------------------------------------------------------------------


@app.command()
def validate(files: FileOption) -> None:
    """Check TrainingRun manifests offline: schema, cross-field rules, names. Exit code 2 on any problem.

    Prints `FILE: ok (TrainingRun NAME)` per valid document on stdout and `FILE: field: problem` per problem
    on stderr."""
    failed = [file for file in files if not _validate_file(file)]
    if failed:
        raise typer.Exit(code=EXIT_USAGE)


def _validate_file(file: Path) -> bool:
    from runyard.validation import advisories, validate_manifest

    try:
        located = _located([file])
    except ValidationFailedError as exc:
        typer.echo(str(exc), err=True)
        return False
    valid = True
    for where, doc in located:
        problems = validate_manifest(doc)
        for problem in problems:
            typer.echo(f"{where}: {problem}", err=True)
        if not problems:
            typer.echo(f"{where}: ok ({doc.get('kind', 'TrainingRun')} {_doc_name(doc)})")
            for note in advisories(doc):
                typer.echo(f"{where}: warning: {note}", err=True)
        valid = valid and not problems
    return valid


@app.command()
def render(
    ctx_: typer.Context,
    files: FileOption,
    namespace: Annotated[
        str | None,
        typer.Option(
            "-n", "--namespace", help="Namespace for the objects (default: manifest's).", callback=_check_namespace
        ),
    ] = None,
    template_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--template",
            help="A file of TrainingRunTemplate/ClusterTrainingRunTemplate objects to merge as the operator would "
            "(default templates and spec.templateRef); repeatable.",
        ),
    ] = None,
    from_cluster: Annotated[
        bool,
        typer.Option("--cluster", help="Merge the cluster's default templates and spec.templateRef (reads them)."),
    ] = False,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Print the Kubernetes objects the operator would create for each TrainingRun, as multi-document YAML.

    With --template or --cluster the run's templates are merged first, and a broken lock is reported as the
    operator would report it (exit code 2)."""
    from runyard.api import TrainingRun
    from runyard.builders import BuildContext, build_children
    from runyard.templating import effective_manifest, layers_for
    from runyard.validation import dump_manifests, load_manifests

    ctx = BuildContext(ssh_private_key=RENDER_SSH_PRIVATE_KEY, ssh_public_key=RENDER_SSH_PUBLIC_KEY)
    templates: list[dict[str, Any]] = []
    for file in template_files or []:
        try:
            templates += load_manifests(file)
        except ValueError as exc:
            typer.echo(f"{file}: {exc}", err=True)
            raise typer.Exit(code=EXIT_USAGE) from None
    client = _client(ctx_, kubeconfig, context, namespace) if from_cluster else None
    objects = []
    for doc in _runs(files):
        if template_files or client is not None:
            found = templates + (client.templates(doc, namespace=namespace) if client is not None else [])
            try:
                merged, found_problems = effective_manifest(doc, layers_for(doc, found))
                problems = [str(p) for p in found_problems]
            except ValueError as exc:
                merged, problems = doc, [str(exc)]
            doc = merged
            if problems:
                for problem in problems:
                    typer.echo(f"{_doc_name(doc)}: {problem}", err=True)
                raise typer.Exit(code=EXIT_USAGE)
        run = TrainingRun.model_validate(doc)
        run.metadata.uid = RENDER_UID
        if namespace:
            run.metadata.namespace = namespace
        objects += build_children(run, ctx)
    typer.echo(RENDER_NOTE.format(uid=RENDER_UID) + dump_manifests(objects), nl=False)


# --- cluster commands -------------------------------------------------------------------------------


@app.command()
def submit(
    ctx: typer.Context,
    files: FileOption,
    name: Annotated[str | None, typer.Option("--name", help="Override metadata.name (one document only).")] = None,
    wait_: Annotated[bool, typer.Option("--wait", help="Wait for each run to succeed (exit code as `wait`).")] = False,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0, callback=_check_seconds, help="Seconds `--wait` waits; 0 waits forever."),
    ] = 600,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate on the API server; create nothing.")] = False,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Validate and create TrainingRuns from YAML files (every document is checked before any is created)."""
    from runyard.validation import advisories

    docs = _runs(files, name)
    client = _client(ctx, kubeconfig, context, namespace)
    created = []
    for doc in docs:
        for note in advisories(doc):
            typer.echo(f"warning: {_doc_name(doc)}: {note}", err=True)
        run = client.submit(doc, dry_run=dry_run)
        created.append(run)
        suffix = " (server dry run)" if dry_run else ""
        typer.echo(f"trainingrun.runyard.dev/{run.name} created{suffix}")
    if wait_ and not dry_run:
        for run in created:
            _wait(client, run.name, "Succeeded", timeout or None)


@app.command("get")
def get_(
    ctx: typer.Context,
    name: NameArg,
    output: Annotated[Output, typer.Option("-o", "--output", help="Output format.")] = Output.table,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Show one TrainingRun."""
    run = _client(ctx, kubeconfig, context, namespace).get(name)
    _print_runs([run], output, single=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    output: Annotated[Output, typer.Option("-o", "--output", help="Output format.")] = Output.table,
    selector: Annotated[str | None, typer.Option("-l", "--selector", help="Label selector, e.g. team=ml.")] = None,
    phase: Annotated[
        str | None, typer.Option("--phase", help="Only runs in this phase.", callback=_check_phase)
    ] = None,
    all_namespaces: Annotated[bool, typer.Option("-A", "--all-namespaces", help="Every namespace.")] = False,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """List TrainingRuns."""
    client = _client(ctx, kubeconfig, context, namespace)
    runs = client.list(labels=selector, phase=phase, all_namespaces=all_namespaces)
    _print_runs(runs, output)


def _progress_lines(run: TrainingRun) -> list[str]:
    """status.progress as `describe` prints it: how far, how fast, when done, and which ranks went silent."""
    progress = run.status.progress if run.status else None
    if progress is None:
        return []
    lines = [f"Step:       {progress.summary or progress.step}"]
    if progress.steps_per_second is not None:
        lines.append(f"Rate:       {progress.steps_per_second:g} steps/s")
    if progress.eta is not None:
        lines.append(f"ETA:        {progress.eta} ({_eta(run)} from now)")
    reported = f"{progress.last_report_time or '-'} from {progress.reporting_ranks or 0} ranks"
    lines.append(f"Reported:   {reported} (attempt {progress.attempt or 0})")
    for silent in progress.silent_ranks or []:
        lines.append(
            f"Silent:     rank {silent.rank} ({silent.pod} on {silent.node or '-'}), last report "
            f"{silent.last_report_time or '-'}"
        )
    return lines


def _failure_lines(failure: FailureInfo) -> list[str]:
    """`status.failure` as one block: category, where (replica, rank, pod, node), how (exit code, reason, message),
    then the log tail indented; `describe` prints it, and `wait` before its error line when the run failed."""
    where = failure.role
    if failure.role is not None and failure.index is not None:
        where = f"{failure.role}-{failure.index}"
    if where and failure.rank is not None:
        where += f" (rank {failure.rank})"
    message = failure.message
    tail = (failure.log_tail or "").splitlines()
    if message and tail and message.rstrip().splitlines()[-1:] == tail[-1:]:
        # A termination message that falls back to the log (or torchrun's summary over it) ends as the tail does:
        # its first line is the news, the rest is below.
        first = message.splitlines()[0]
        message = f"{first} (...)" if len(message.splitlines()) > 1 else first
    fields: list[tuple[str, str | None]] = [
        ("Category", failure.category.value if failure.category else None),
        ("Replica", where),
        ("Pod", failure.pod),
        ("Node", failure.node),
        ("Container", failure.container),
        ("Exit code", None if failure.exit_code is None else str(failure.exit_code)),
        ("Reason", failure.reason),
        ("Message", message),
    ]
    lines = ["Failure:"]
    for key, detail in fields:
        if detail:
            first, *rest = detail.splitlines() or [""]
            lines.append(f"  {key + ':':<11} {first}")
            lines += [f"  {'':<11} {line}" for line in rest]
    if tail:
        lines.append(f"  Log tail (last {len(tail)} lines of {failure.pod or 'the replica'}):")
        lines += [f"    {line}" for line in tail]
    return lines


def _checkpoint_lines(status: TrainingRunStatus) -> list[str]:
    """The newest checkpoint, what the current replicas resumed from, and a stop waiting to resume."""
    lines: list[str] = []
    last = status.last_checkpoint
    if last:
        step = f"step {last.step}" if last.step is not None else "no step in its name"
        digest = f", sha256 {last.sha256[:12]}" if last.sha256 else ""
        lines.append(f"last:     {step} ({last.time or '?'}{digest}) {last.uri}")
    resumed = status.resumed_from
    if resumed:
        step = f"step {resumed.step}" if resumed.step is not None else "the newest checkpoint in the store"
        lines.append(f"resumed:  from {step} (attempt {resumed.attempt}, {resumed.time or '?'})")
    stopped = status.stopped
    if stopped:
        lines.append(f"stopped:  {stopped.reason} at {stopped.time or '?'}; the replicas resume when the run does")
    return lines


@app.command()
def describe(
    ctx: typer.Context,
    name: NameArg,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Status, conditions, failure, tracker link, GPU summary, artifacts and events of a TrainingRun."""
    from rich.table import Table

    from runyard import frameworks

    client = _client(ctx, kubeconfig, context, namespace)
    run = client.get(name)
    events = client.events(name)
    replicas = client.replicas(name)
    console = _console()
    status = run.status
    spec = run.spec
    fields: list[tuple[str, str]] = [
        ("Name", run.name),
        ("Namespace", run.metadata.namespace or "-"),
        ("Framework", spec.framework),
        ("Image", spec.image or "(from its template)"),
        ("Replicas", ", ".join(f"{role}={spec.replicas[role].replicas}" for role in frameworks.roles_of(spec))),
        ("Created", _created(run) or "-"),
    ]
    if status:
        fields += [
            ("Phase", status.phase.value if status.phase else "-"),
            ("Message", status.message or "-"),
            ("Ready", f"{status.ready_replicas or 0}/{status.total_replicas or 0}"),
            ("Restarts", f"{status.restarts or 0} (backoff limit {spec.run_policy.backoff_limit})"),
            ("Started", status.start_time or "-"),
            ("Completed", status.completion_time or "-"),
            ("Nodes", ", ".join(status.nodes or []) or "-"),
            ("GPUs", str(status.gpus or 0)),
        ]
        if status.scheduling_message:
            fields.append(("Scheduling", status.scheduling_message))
    for key, value in fields:
        console.print(f"[bold]{key + ':':<12}[/bold] {value}")
    progress = status.progress if status else None
    if progress:
        console.print("[bold]Progress:[/bold]")
        for line in _progress_lines(run):
            console.print(f"  {line}", markup=False, highlight=False)
    checkpoint_lines = _checkpoint_lines(status) if status else []
    if checkpoint_lines:
        console.print("[bold]Checkpoint:[/bold]")
        for line in checkpoint_lines:
            console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    if status and status.failure:
        header, *block = _failure_lines(status.failure)
        console.print(f"[bold]{header}[/bold]")
        for line in block:
            # Messages and logs are the program's text: no markup, no wrapping of long log lines.
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    tracking = status.tracking if status else None
    console.print("[bold]Tracking:[/bold]")
    if tracking and (tracking.url or tracking.mlflow or tracking.ids):
        if tracking.url:
            console.print(f"  URL:        {tracking.url}")
        if tracking.mlflow:
            console.print(f"  MLflow:     experiment {tracking.mlflow.experiment_id}, run {tracking.mlflow.run_id}")
        for key, value in (tracking.ids or {}).items():
            console.print(f"  {key + ':':<11} {value}")
    else:
        console.print("  -")
    gpu = status.gpu if status else None
    console.print("[bold]GPU:[/bold]")
    if gpu and gpu.samples:
        console.print(
            f"  {gpu.gpu_hours or 0:.2f} GPU-h, utilisation avg {_pct(gpu.avg_utilization)} peak "
            f"{_pct(gpu.peak_utilization)}, peak memory {(gpu.peak_memory_bytes or 0) / 2**30:.1f} GiB, "
            f"idle {gpu.idle_gpu_hours or 0:.2f} GPU-h, energy {gpu.energy_kwh or 0:.3f} kWh ({gpu.samples} samples)"
        )
    else:
        console.print("  no GPU samples" if status and status.gpus else "  -")
    artifacts = status.artifacts if status else None
    if artifacts and artifacts.store_uri:
        console.print("[bold]Artifacts:[/bold]")
        console.print(f"  {artifacts.store_uri} ({artifacts.files or 0} files, {artifacts.total_bytes or 0} bytes)")
        if artifacts.newest_checkpoint:
            console.print(f"  newest checkpoint: {artifacts.newest_checkpoint}")
    console.print("[bold]Pods:[/bold]")
    pods = Table("REPLICA", "POD", "PHASE", "NODE", "IP", "ATTEMPT", box=None)
    for r in replicas:
        pods.add_row(f"{r.role}-{r.index}", r.pod, r.phase, r.node or "-", r.ip or "-", str(r.restart_attempt))
    console.print(pods if pods.row_count else "  -")
    conditions = Table("TYPE", "STATUS", "REASON", "MESSAGE", "LAST TRANSITION", box=None, title_justify="left")
    for cond in (status.conditions if status else None) or []:
        conditions.add_row(
            cond.type, cond.status.value, cond.reason or "", cond.message or "", cond.last_transition_time or ""
        )
    console.print("[bold]Conditions:[/bold]")
    console.print(conditions if conditions.row_count else "  -")
    console.print("[bold]Events:[/bold]")
    table = Table("TYPE", "REASON", "OBJECT", "AGE", "MESSAGE", box=None)
    for event in events:
        age = _age(event.last_seen.isoformat()) if event.last_seen else "-"
        count = f" (x{event.count})" if event.count > 1 else ""
        table.add_row(event.type, event.reason, f"{event.kind}/{event.object_name}", age, event.message + count)
    console.print(table if table.row_count else "  -")


@app.command()
def logs(
    ctx: typer.Context,
    name: NameArg,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Stream until the run finishes.")] = False,
    rank: Annotated[
        int | None,
        typer.Option("--rank", min=0, help="Only this replica (ordinal over all roles; node index for pytorch)."),
    ] = None,
    role: Annotated[str | None, typer.Option("--role", help="Only this role (with --rank: its index).")] = None,
    attempt: Annotated[
        int | None,
        typer.Option("--attempt", min=0, help="This gang-restart attempt (0: the first): its pods, else its archive."),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option("--store", help="Artifact store whose log archive to read when the run itself is deleted (TTL)."),
    ] = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Print the logs of a run's replicas, each line prefixed with its replica (role-index).

    Replicas whose pods are gone are read from the run's log archive (s3:// artifact stores), after a notice line.
    """
    client = _client(ctx, kubeconfig, context, namespace)
    printed = False
    try:
        for line in client.logs(name, rank, role=role, follow=follow, attempt=attempt, store=store):
            printed = True
            typer.echo(f"runyard: {line}" if line.notice else str(line), err=line.notice)
    except KeyboardInterrupt:
        return
    if not printed:
        typer.echo(f"runyard: run {name} has no pods (yet)", err=True)


def _wait(client: Client, name: str, for_: str, timeout: float | None) -> TrainingRun:
    import time

    started = time.monotonic()
    last: list[str] = []

    def describe_progress(run: TrainingRun) -> str:
        s = run.status
        phase = s.phase.value if s and s.phase else "Pending"
        ready = f", {s.ready_replicas or 0}/{s.total_replicas} ready" if s and s.total_replicas else ""
        restarts = f", {s.restarts} restarts" if s and s.restarts else ""
        return f"{name}: {phase}{ready}{restarts}"

    try:
        if sys.stdout.isatty():
            console = _console()
            with console.status(f"waiting for {name} to be {for_}") as spinner:

                def on_change(run: TrainingRun) -> None:
                    elapsed = _duration(time.monotonic() - started)
                    spinner.update(f"{describe_progress(run)} (waiting for {for_}, {elapsed})")

                run = client.wait(name, for_, timeout=timeout, callback=on_change)
        else:

            def on_change(run: TrainingRun) -> None:
                text = describe_progress(run)
                if not last or last[-1] != text:
                    last.append(text)
                    typer.echo(text, err=True)

            run = client.wait(name, for_, timeout=timeout, callback=on_change)
    except RunFailedError as err:
        # What failed, where and its last log lines as one block; the `error:` line and exit code 1 follow as usual.
        if err.failure is not None:
            typer.echo("\n".join(_failure_lines(err.failure)), err=True)
        raise
    phase = run.status.phase.value if run.status and run.status.phase else "?"
    typer.echo(f"trainingrun.runyard.dev/{name} {phase} after {_duration(time.monotonic() - started)}")
    return run


@app.command()
def wait(
    ctx: typer.Context,
    name: NameArg,
    for_: Annotated[str, typer.Option("--for", help="Phase to wait for.", callback=_check_phase)] = "Succeeded",
    timeout: TimeoutOption = 600,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Wait for a run to reach a phase. Exit 1 when it fails (with the failed replica and exit code), 4 on timeout."""
    _wait(_client(ctx, kubeconfig, context, namespace), name, for_, timeout or None)


@app.command()
def delete(
    ctx: typer.Context,
    names: Annotated[
        list[str], typer.Argument(help="Runs to delete.", autocompletion=_complete_names, callback=_check_names)
    ],
    wait_: Annotated[bool, typer.Option("--wait", help="Return once the runs are gone.")] = False,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Delete TrainingRuns (their Jobs and pods go with them)."""
    client = _client(ctx, kubeconfig, context, namespace)
    for name in names:
        client.delete(name, wait=wait_)
        typer.echo(f"trainingrun.runyard.dev/{name} deleted")


def _top_table(runs: list[TrainingRun]) -> Table:
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for header in ("NAME", "NAMESPACE", "FRAMEWORK", "PHASE", "READY", "GPUS", "UTIL AVG", "UTIL PEAK", "PEAK MEM"):
        table.add_column(header)
    for header in ("PROGRESS", "ETA", "GPU-H", "IDLE GPU-H", "ENERGY", "AGE"):
        table.add_column(header, justify="right")
    colours = {"Running": "green", "Succeeded": "blue", "Failed": "red", "Restarting": "yellow"}
    for run in runs:
        s = run.status
        gpu = s.gpu if s else None
        phase = s.phase.value if s and s.phase else "-"
        table.add_row(
            run.metadata.name or "-",
            run.metadata.namespace or "-",
            run.spec.framework,
            f"[{colours.get(phase, 'white')}]{phase}[/]",
            f"{s.ready_replicas or 0}/{s.total_replicas}" if s and s.total_replicas else "-",
            str(s.gpus or 0) if s else "0",
            _pct(gpu.avg_utilization if gpu else None),
            _pct(gpu.peak_utilization if gpu else None),
            f"{gpu.peak_memory_bytes / 2**30:.1f}Gi" if gpu and gpu.peak_memory_bytes else "-",
            _progress(run),
            _eta(run),
            f"{gpu.gpu_hours:.2f}" if gpu and gpu.gpu_hours is not None else "-",
            f"{gpu.idle_gpu_hours:.2f}" if gpu and gpu.idle_gpu_hours is not None else "-",
            f"{gpu.energy_kwh:.3f}kWh" if gpu and gpu.energy_kwh is not None else "-",
            _age(_created(run)),
        )
    return table


@app.command()
def top(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Print one frame and exit.")] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.5, callback=_check_seconds, help="Seconds between refreshes.")
    ] = 2.0,
    all_namespaces: Annotated[bool, typer.Option("-A", "--all-namespaces", help="Every namespace.")] = False,
    selector: Annotated[str | None, typer.Option("-l", "--selector", help="Label selector.")] = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """A live table of runs: phase, GPUs, utilisation (status.gpu), progress and ETA (status.progress). Ctrl-C exits."""
    import time

    from rich.live import Live

    client = _client(ctx, kubeconfig, context, namespace)

    def frame() -> Table:
        return _top_table(client.list(labels=selector, all_namespaces=all_namespaces))

    console = _console()
    if once:
        console.print(frame())
        return
    try:
        with Live(frame(), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                live.update(frame(), refresh=True)
    except KeyboardInterrupt:
        return


@app.command()
def run(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="TrainingRun YAML file (one document).")],
    local: Annotated[
        bool, typer.Option("--local", help="Run the replicas as local processes instead of on the cluster.")
    ] = False,
    state_dir: Annotated[
        Path, typer.Option("--state-dir", file_okay=False, help="Local runs' state and MLflow store.")
    ] = Path(".runyard"),
    tracking_uri: Annotated[
        str | None, typer.Option("--tracking-uri", help="MLflow URI (default $MLFLOW_TRACKING_URI, else embedded).")
    ] = None,
    tracking: Annotated[
        bool | None, typer.Option("--tracking/--no-tracking", help="Force tracking on or off (default: spec).")
    ] = None,
    plot: Annotated[bool, typer.Option("--plot", help="Write metrics.png (loss, accuracy per step).")] = False,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0, callback=_check_seconds, help="Fail after this many seconds; 0: no limit."),
    ] = 0,
    base_port: Annotated[
        int | None,
        typer.Option(
            "--base-port",
            min=1,
            max=65535,
            help="First port of the local replicas (default: a free range outside the ephemeral ports).",
        ),
    ] = None,
    resume_from: Annotated[
        Path | None,
        typer.Option("--resume-from", exists=True, help="Checkpoint or run dir, as RUNYARD_RESUME_FROM (local)."),
    ] = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Run a TrainingRun and exit with its outcome: locally (--local) or on the cluster (submit, follow logs, wait)."""
    _runs([file], one=True)
    if not local:
        client = _client(ctx, kubeconfig, context, namespace)
        created = client.submit(file)
        typer.echo(f"trainingrun.runyard.dev/{created.name} created")
        for line in client.logs(created.name, follow=True):
            typer.echo(f"runyard: {line}" if line.notice else str(line), err=line.notice)
        _wait(client, created.name, "Succeeded", timeout or None)
        return
    from runyard.local import format_summary, run_local

    result = run_local(
        file,
        state_dir=state_dir,
        tracking_uri=tracking_uri,
        tracking=tracking,
        base_port=base_port,
        timeout=timeout or None,
        resume_from=resume_from,
    )
    typer.echo("")
    typer.echo(format_summary(result))
    if plot:
        if result.run_id:
            from runyard.plot import plot_run_dir

            try:
                typer.echo(f"  plot:      {plot_run_dir(result.run_dir)}")
            except ValueError as exc:
                typer.echo(f"runyard: no plot: {exc}", err=True)
        else:
            typer.echo("runyard: no plot: the run was not tracked", err=True)
    raise typer.Exit(code=result.exit_code)


@app.command("plot")
def plot_(
    run_dir: Annotated[
        Path | None,
        typer.Argument(file_okay=False, help="A local run's directory (default: the latest under --state-dir)."),
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="An MLflow run id instead of a local run.")] = None,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow URI for --run-id.")] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", dir_okay=False, help="PNG path (default <run dir>/metrics.png).")
    ] = None,
    metrics: Annotated[list[str] | None, typer.Option("-m", "--metric", help="Metric to plot (repeatable).")] = None,
    state_dir: Annotated[
        Path, typer.Option("--state-dir", file_okay=False, help="Local runs' state directory.")
    ] = Path(".runyard"),
) -> None:
    """Plot metrics per step (default loss and accuracy) of a tracked run to a PNG."""
    from runyard.plot import DEFAULT_METRICS, plot_metrics, plot_run_dir

    keys = tuple(metrics or DEFAULT_METRICS)
    try:
        if run_id:
            uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
            if not uri:
                raise CliError("--run-id needs --tracking-uri (or MLFLOW_TRACKING_URI)")
            path = plot_metrics(uri, run_id, output or Path(f"{run_id}.png"), metrics=keys)
        else:
            from runyard.local import latest_run_dir

            path = plot_run_dir(run_dir or latest_run_dir(state_dir), output, metrics=keys)
    except ValueError as exc:  # nothing to plot: no such metric, an untracked run
        raise CliError(str(exc)) from exc
    typer.echo(str(path))


class CompareOutput(StrEnum):
    """Formats of `compare`."""

    table = "table"
    json = "json"


@app.command()
def compare(
    ctx: typer.Context,
    runs: Annotated[
        list[str],
        typer.Argument(help="Runs to compare: TrainingRun names in the cluster, or local run directories."),
    ],
    metrics: Annotated[
        list[str] | None, typer.Option("-m", "--metric", help="Only these metrics (repeatable); --plot draws them.")
    ] = None,
    output: Annotated[CompareOutput, typer.Option("-o", "--output", help="table or json.")] = CompareOutput.table,
    plot: Annotated[
        Path | None, typer.Option("--plot", dir_okay=False, help="PNG overlaying the metrics (default loss).")
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option("--tracking-uri", help="MLflow URI of cluster runs (default MLFLOW_TRACKING_URI).")
    ] = None,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Runs side by side: params, final and best metrics, image, command, git commit, GPU-hours, energy, duration.

    Rows whose values differ are marked with `*`.
    """
    from runyard import compare as cmp

    if len(runs) < 2:
        raise CliError("compare needs at least two runs")
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    records = []
    client: Client | None = None
    for ref in runs:
        if (Path(ref) / "result.json").is_file():
            record = cmp.record_from_local(ref)
        else:
            client = client or _client(ctx, kubeconfig, context, namespace)
            record = cmp.record_from_cluster(client.get(_check_name(ref)))
        if record.run_id and not (record.tracking_uri or uri):
            typer.echo(f"runyard: {record.name}: no MLflow URI for its metrics (--tracking-uri)", err=True)
        try:
            record = cmp.with_mlflow(record, uri, metrics)
        except Exception as exc:  # a tracker that is down still leaves the runs' own facts to compare
            typer.echo(f"runyard: {record.name}: MLflow run {record.run_id} not read: {_message(exc)}", err=True)
        records.append(record)
    if output is CompareOutput.json:
        typer.echo(cmp.records_json(records))
    else:
        headers, rows = cmp.table(records)
        typer.echo(_text_table(headers, rows))
    if plot is not None:
        try:
            typer.echo(
                f"plot: {cmp.plot_overlay(records, metrics or ['loss'], plot)}", err=output is CompareOutput.json
            )
        except ValueError as exc:
            raise CliError(str(exc)) from exc


# --- sweeps ----------------------------------------------------------------------------------------

sweep_app = typer.Typer(
    name="sweep",
    help="Hyperparameter sweeps whose trials are TrainingRuns (docs/sweeps.md).",
    no_args_is_help=True,
)
app.add_typer(sweep_app)

SweepFile = Annotated[Path, typer.Option("-f", "--file", exists=True, dir_okay=False, help="TrainingRunSweep YAML.")]


def _sweep_table(status: dict[str, Any], goal_metric: str) -> str:
    rows = [
        [
            t.get("name", ""),
            str(t.get("phase") or "-"),
            ", ".join(f"{k}={v}" for k, v in (t.get("params") or {}).items()),
            "-" if t.get("value") is None else f"{t['value']:.6g}",
        ]
        for t in status.get("trials") or []
    ]
    return _text_table(["TRIAL", "PHASE", "PARAMS", goal_metric.upper()], rows)


@sweep_app.command("run")
def sweep_run(
    file: SweepFile,
    local: Annotated[bool, typer.Option("--local", help="Run the trials as local runs (required for now).")] = False,
    state_dir: Annotated[
        Path, typer.Option("--state-dir", file_okay=False, help="Local runs' state and MLflow store.")
    ] = Path(".runyard"),
    tracking_uri: Annotated[
        str | None, typer.Option("--tracking-uri", help="MLflow URI (default $MLFLOW_TRACKING_URI, else embedded).")
    ] = None,
) -> None:
    """Run a sweep's trials as local runs, `parallelism` at a time; print the trials and the best one."""
    from runyard.local_sweep import run_sweep_local

    if not local:
        raise CliError("sweep run needs --local; on a cluster use `runyard sweep create -f FILE`")
    result = run_sweep_local(
        file, state_dir=state_dir, tracking_uri=tracking_uri, on_notice=lambda m: typer.echo(f"runyard: {m}", err=True)
    )
    metric = result.objective
    trials = [{"name": t.name, "phase": t.state, "params": dict(t.params), "value": t.value} for t in result.trials]
    typer.echo(_sweep_table({"trials": trials}, metric))
    typer.echo(f"{result.message}; parent MLflow run {result.parent_run_id} ({result.tracking_uri})")
    if result.best is None:
        typer.echo("no trial succeeded", err=True)
        raise typer.Exit(code=EXIT_RUN_FAILED)
    typer.echo(f"best: {result.best.name} {metric}={result.best.value:.6g} {dict(result.best.params)}")


@sweep_app.command("create")
def sweep_create(
    ctx: typer.Context,
    file: SweepFile,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """Create a TrainingRunSweep in the cluster; the operator creates its trials."""
    created = _client(ctx, kubeconfig, context, namespace).submit_sweep(file)
    typer.echo(f"trainingrunsweep.runyard.dev/{created['metadata']['name']} created")


@sweep_app.command("status")
def sweep_status(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The sweep.")],
    output: Annotated[CompareOutput, typer.Option("-o", "--output", help="table or json.")] = CompareOutput.table,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """A sweep's phase, trials (parameters, phase, objective value), GPU-hours and best trial."""
    import json

    sweep = _client(ctx, kubeconfig, context, namespace).get_sweep(name)
    status = sweep.get("status") or {}
    if output is CompareOutput.json:
        typer.echo(json.dumps(status, indent=2))
        return
    typer.echo(_sweep_table(status, sweep["spec"]["objective"]["metric"]))
    best = status.get("best") or {}
    typer.echo(
        f"{status.get('phase') or 'Pending'}: {status.get('message') or ''} "
        f"(GPU-hours {float(status.get('gpuHours') or 0):.4f}; best {best.get('name') or '-'})"
    )


@sweep_app.command("best")
def sweep_best(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The sweep.")],
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
    namespace: NamespaceOption = None,
) -> None:
    """The best finished trial: its TrainingRun, objective value and parameters (exit 3 while there is none)."""
    import json

    sweep = _client(ctx, kubeconfig, context, namespace).get_sweep(name)
    best = (sweep.get("status") or {}).get("best")
    if not best:
        typer.echo(f"{name}: no finished trial yet", err=True)
        raise typer.Exit(code=EXIT_NOT_FOUND)
    typer.echo(json.dumps(best, indent=2))


def main() -> None:
    """Console-script entry point."""
    app()
