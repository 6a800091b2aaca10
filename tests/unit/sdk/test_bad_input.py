"""Bad input never gives a traceback: one `error:` line on stderr naming the file or field, and the documented exit code.

The CLI runs in-process (typer's CliRunner). Nothing here needs a cluster: $KUBECONFIG points at a kubeconfig whose
server is https://127.0.0.1:1 (connection refused), so a command that does reach for the API fails fast.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiClient
from typer.testing import CliRunner

from runyard import cli
from runyard.client import Client
from runyard.exceptions import ApiError, RunyardError, ValidationFailedError
from runyard.validation import load_manifests

runner = CliRunner()

RUN_HEAD = "apiVersion: runyard.dev/v1alpha1\nkind: TrainingRun\n"
GOOD = (
    RUN_HEAD
    + """metadata:
  name: good
spec:
  framework: generic
  image: python:3.11-slim
  securityContext: {runAsUser: 1000}
  command: [python, -c, "print('hi')"]
  replicas:
    node:
      replicas: 1
"""
)
SPEC = "spec: {framework: generic, image: i, command: [a], replicas: {node: {replicas: 1}}}\n"
UNREACHABLE = "https://127.0.0.1:1"


def _bomb() -> str:
    lines = [RUN_HEAD + "metadata: {name: bomb}", 'x0: &x0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"x{i}: &x{i} [" + ", ".join([f"*x{i - 1}"] * 10) + "]" for i in range(1, 9)]
    return "\n".join(lines) + "\n" + SPEC


# name -> content; None: a directory; names not here do not exist.
FILES: dict[str, bytes | None] = {
    "malformed.yaml": (RUN_HEAD + "metadata: {name: [\n").encode(),
    "list.yaml": b"- a\n- b\n",
    "scalar.yaml": b"hello\n",
    "empty.yaml": b"",
    "comments.yaml": b"# nothing but a comment\n\n---\n",
    "metadata-oops.yaml": (RUN_HEAD + "metadata: oops\n" + SPEC).encode(),
    "spec-3.yaml": (RUN_HEAD + "metadata: {name: x}\nspec: 3\n").encode(),
    "name-5.yaml": (RUN_HEAD + "metadata: {name: 5}\n" + SPEC).encode(),
    "bad-name.yaml": (RUN_HEAD + "metadata: {name: Bad_Name}\n" + SPEC).encode(),
    "not-utf8.yaml": RUN_HEAD.encode() + b"metadata: {name: \xff\xfe}\n",
    "nul.yaml": RUN_HEAD.encode() + b"metadata: {name: a\x00}\n",
    "a-directory.yaml": None,
    "configmap.yaml": b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n",
    "bad.json": b'{"apiVersion": "runyard.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "x"},',
    "python-tag.yaml": b"a: !!python/object/apply:os.system [echo hi]\n",
    "bomb.yaml": _bomb().encode(),
    "recursive.yaml": (RUN_HEAD + "metadata: {name: r}\n" + SPEC.replace("[a]", "&a [*a]")).encode(),
    "deep.yaml": b"[" * 100_000,
    "huge.yaml": b"# padding\n" * (900 * 1024),  # 9 MiB
    "two-docs.yaml": f"{GOOD}---\n{GOOD}".encode(),
    "good.yaml": GOOD.encode(),
}

# (case, file, what stderr must name, how many stderr lines `validate` may print)
FILE_CASES: list[tuple[str, str, list[str], int]] = [
    ("malformed-yaml", "malformed.yaml", ["invalid YAML", "line 4"], 1),
    ("yaml-list", "list.yaml", ["document 1 is a list, not a mapping"], 1),
    ("yaml-scalar", "scalar.yaml", ["document 1 is a string, not a mapping"], 1),
    ("empty-file", "empty.yaml", ["no TrainingRun in it"], 1),
    ("only-comments", "comments.yaml", ["no TrainingRun in it"], 1),
    ("metadata-oops", "metadata-oops.yaml", ["metadata: Input should be a valid dictionary"], 1),
    ("spec-3", "spec-3.yaml", ["spec: Input should be a valid dictionary"], 1),
    ("name-5", "name-5.yaml", ["metadata.name: Input should be a valid string"], 1),
    ("invalid-name", "bad-name.yaml", ["metadata.name", "DNS-1035"], 1),
    ("non-utf8", "not-utf8.yaml", ["not UTF-8 text: byte 0xff"], 1),
    ("nul-byte", "nul.yaml", ["invalid YAML", "unacceptable character #x0000"], 1),
    ("directory", "a-directory.yaml", ["is a directory"], 1),
    ("missing", "missing.yaml", ["does not exist"], 1),
    ("other-kind", "configmap.yaml", ["kind: Input should be 'TrainingRun' (got 'ConfigMap')"], 2),
    ("bad-json", "bad.json", ["invalid YAML", "line 1"], 1),
    ("python-tag", "python-tag.yaml", ["could not determine a constructor"], 1),
    ("alias-bomb", "bomb.yaml", ["expands to more than"], 1),
    ("recursive-alias", "recursive.yaml", ["recursive structure"], 1),
    ("deep-nesting", "deep.yaml", ["nested too deeply"], 1),
    ("huge-file", "huge.yaml", ["too large"], 1),
]
if Path("/dev/zero").exists():  # a file that never ends
    FILE_CASES.append(("endless-device", "/dev/zero", ["too large"], 1))

COMMANDS: list[tuple[str, list[str]]] = [
    ("validate", ["validate", "-f"]),
    ("render", ["render", "-f"]),
    ("submit", ["submit", "-f"]),
    ("run", ["run"]),
    ("run-local", ["run", "--local"]),
]


def kubeconfig(server: str = UNREACHABLE, namespace: str = "ns1") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": server}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": namespace}}],
            "current-context": "ctx",
        }
    )


KUBECONFIGS: dict[str, bytes | None] = {
    "kc-unreachable": kubeconfig().encode(),
    "kc-malformed": b"clusters: [\n",
    "kc-list": b"- a\n- b\n",
    "kc-scalar": b"hello\n",
    "kc-empty": b"",
    "kc-no-contexts": b"apiVersion: v1\nkind: Config\nclusters: []\nusers: []\n",
    "kc-contexts-3": b"apiVersion: v1\nkind: Config\ncontexts: 3\ncurrent-context: x\n",
    "kc-dangling": b"clusters: []\nusers: []\ncontexts: [{name: a, context: {cluster: nope, user: nope}}]\ncurrent-context: a\n",
    "kc-binary": b"\xff\xfe\x00\x01",
    "kc-bad-namespace": kubeconfig(namespace="Bad_NS").encode(),
    "kc-directory": None,
}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with every bad file (written once: the huge one is 9 MiB)."""
    root = tmp_path_factory.mktemp("bad-input")
    for name, content in {**FILES, **KUBECONFIGS}.items():
        if content is None:
            (root / name).mkdir()
        else:
            (root / name).write_bytes(content)
    (root / "state-file").write_text("not a directory\n")
    return root


@pytest.fixture(autouse=True)
def workdir(bad_files: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The bad files' directory as the current one; $KUBECONFIG names the unreachable cluster, nothing in-cluster."""
    monkeypatch.chdir(bad_files)
    monkeypatch.setenv("KUBECONFIG", str(bad_files / "kc-unreachable"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("RUNYARD_DEBUG", raising=False)
    return bad_files


def invoke(args: list[str]) -> Any:
    return runner.invoke(cli.app, args)


def assert_error(result: Any, code: int, needles: list[str], max_lines: int = 1) -> None:
    """Exit `code`, no traceback, 1..max_lines lines on stderr that contain every needle."""
    assert result.exit_code == code, f"exit {result.exit_code}, wanted {code}:\n{result.output}"
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= max_lines, result.stderr
    for needle in needles:
        assert needle in result.stderr, f"{needle!r} not in {result.stderr!r}"


# --- manifest files: validate, render, submit, run, run --local -------------------------------------------


@pytest.mark.parametrize(("command", "args"), COMMANDS, ids=[c for c, _ in COMMANDS])
@pytest.mark.parametrize(("file", "needles", "max_lines"), [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_bad_manifest_file(command: str, args: list[str], file: str, needles: list[str], max_lines: int) -> None:
    result = invoke([*args, file])
    assert_error(result, cli.EXIT_USAGE, [file, *needles], max_lines if command == "validate" else 1)
    assert "created" not in result.stdout


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["validate", "-f", "good.yaml", "-f", "metadata-oops.yaml"], ["metadata-oops.yaml: metadata:"]),
        (["render", "-f", "good.yaml", "-f", "empty.yaml"], ["empty.yaml: no TrainingRun"]),
        (["submit", "-f", "good.yaml", "-f", "spec-3.yaml"], ["spec-3.yaml: invalid TrainingRun x: spec:"]),
        (["run", "two-docs.yaml"], ["two-docs.yaml: expected one TrainingRun document, found 2"]),
        (["submit", "-f", "two-docs.yaml", "--name", "x"], ["--name needs exactly one TrainingRun document"]),
        (["submit", "-f", "good.yaml", "--name", ""], ["good.yaml", "metadata.name: Field required"]),
        (["submit", "-f", "good.yaml", "--name", "Bad_Name"], ["good.yaml", "metadata.name", "DNS-1035"]),
        (["validate"], ["Missing option '-f' / '--file'"]),
        (["render", "-f", "good.yaml", "-n", "Bad/NS"], ["'-n' / '--namespace'", "invalid namespace 'Bad/NS'"]),
    ],
    ids=[
        "validate-one-bad-of-two",
        "render-one-empty-of-two",
        "submit-checks-all-before-creating",
        "run-two-documents",
        "submit-name-two-documents",
        "submit-empty-name",
        "submit-invalid-name",
        "validate-no-file",
        "render-invalid-namespace",
    ],
)
def test_bad_manifest_usage(args: list[str], needles: list[str]) -> None:
    result = invoke(args)
    assert_error(result, cli.EXIT_USAGE, needles)
    assert "created" not in result.stdout


def test_validate_still_reports_good_documents_per_document() -> None:
    result = invoke(["validate", "-f", "two-docs.yaml"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "two-docs.yaml (document 1): ok (TrainingRun good)",
        "two-docs.yaml (document 2): ok (TrainingRun good)",
    ]


# --- options and arguments ------------------------------------------------------------------------------

USAGE_CASES: list[tuple[str, list[str], list[str]]] = [
    ("get-invalid-name", ["get", "BAD_NAME"], ["'name'", "invalid run name 'BAD_NAME'"]),
    ("get-empty-name", ["get", ""], ["a run name must not be empty"]),
    ("describe-path-name", ["describe", "../x"], ["invalid run name '../x'"]),
    ("logs-invalid-name", ["logs", "a/b"], ["invalid run name 'a/b'"]),
    ("wait-invalid-name", ["wait", "x" * 64], ["invalid run name"]),
    ("delete-empty-name", ["delete", "ok", ""], ["a run name must not be empty"]),
    ("global-namespace-invalid", ["-n", "Bad_NS", "get", "x"], ["'-n' / '--namespace'", "invalid namespace 'Bad_NS'"]),
    ("global-namespace-empty", ["-n", "", "list"], ["a namespace must not be empty"]),
    ("command-namespace-slash", ["list", "-n", "a/b"], ["invalid namespace 'a/b'"]),
    ("wait-negative-timeout", ["wait", "x", "--timeout", "-1"], ["'--timeout'", "greater than or equal to 0"]),
    ("wait-timeout-not-a-number", ["wait", "x", "--timeout", "abc"], ["'--timeout'", "valid number"]),
    ("submit-negative-timeout", ["submit", "-f", "good.yaml", "--wait", "--timeout", "-1"], ["'--timeout'"]),
    ("run-negative-timeout", ["run", "--local", "good.yaml", "--timeout", "-5"], ["'--timeout'"]),
    ("wait-infinite-timeout", ["wait", "x", "--timeout", "inf"], ["'--timeout'", "not a finite number of seconds"]),
    ("wait-nan-timeout", ["wait", "x", "--timeout", "nan"], ["'--timeout'"]),
    ("top-infinite-interval", ["top", "--interval", "inf"], ["'--interval'", "not a finite number of seconds"]),
    ("wait-unknown-phase", ["wait", "x", "--for", "Bogus"], ["'--for'", "unknown phase 'Bogus'"]),
    ("list-unknown-phase", ["list", "--phase", "Done"], ["'--phase'", "unknown phase 'Done'"]),
    ("list-unknown-output", ["list", "-o", "bogus"], ["'-o' / '--output'", "'bogus'"]),
    ("logs-negative-rank", ["logs", "x", "--rank", "-1"], ["'--rank'"]),
    ("top-zero-interval", ["top", "--interval", "0"], ["'--interval'"]),
    ("run-base-port-0", ["run", "--local", "good.yaml", "--base-port", "0"], ["'--base-port'"]),
    ("run-base-port-70000", ["run", "--local", "good.yaml", "--base-port", "70000"], ["'--base-port'"]),
    ("run-missing-resume-from", ["run", "--local", "good.yaml", "--resume-from", "nope"], ["'--resume-from'"]),
    ("run-state-dir-is-a-file", ["run", "--local", "good.yaml", "--state-dir", "state-file"], ["'--state-dir'"]),
    ("plot-run-dir-is-a-file", ["plot", "good.yaml"], ["good.yaml", "is a file"]),
    ("plot-run-id-without-uri", ["plot", "--run-id", "abc"], ["--run-id needs --tracking-uri"]),
    ("unknown-command", ["bogus"], ["No such command 'bogus'"]),
    ("unknown-option", ["list", "--bogus"], ["No such option: --bogus"]),
    ("option-without-value", ["--kubeconfig"], ["'--kubeconfig' requires an argument"]),
]


@pytest.mark.parametrize(("args", "needles"), [c[1:] for c in USAGE_CASES], ids=[c[0] for c in USAGE_CASES])
def test_bad_option_or_argument(args: list[str], needles: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = invoke(args)
    assert_error(result, cli.EXIT_USAGE, needles)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["plot", "no-such-run-dir"], ["no-such-run-dir/result.json", "No such file or directory"]),
        (["plot", "--state-dir", "no-such-state"], ["no finished local run"]),
    ],
    ids=["plot-missing-run-dir", "plot-empty-state-dir"],
)
def test_missing_local_run_is_not_found(args: list[str], needles: list[str]) -> None:
    assert_error(invoke(args), cli.EXIT_NOT_FOUND, needles)


# --- kubeconfig and connection ------------------------------------------------------------------------------

KUBECONFIG_CASES: list[tuple[str, str, list[str]]] = [
    ("not-yaml", "kc-malformed", ["invalid YAML", "line 2"]),
    ("yaml-list", "kc-list", ["not a kubeconfig", "list"]),
    ("yaml-scalar", "kc-scalar", ["not a kubeconfig", "str"]),
    ("empty", "kc-empty", ["the file is empty"]),
    ("no-contexts", "kc-no-contexts", ["current-context"]),
    ("contexts-not-a-list", "kc-contexts-3", ["`contexts` must be a list"]),
    ("dangling-context", "kc-dangling", ["Expected object with name nope"]),
    ("binary", "kc-binary", ["not UTF-8 text"]),
    ("invalid-namespace", "kc-bad-namespace", ["context 'ctx'", "invalid namespace 'Bad_NS'"]),
    ("missing", "kc-missing", ["no such file"]),
    ("directory", "kc-directory", ["is a directory"]),
]
if Path("/dev/zero").exists():  # a file that never ends
    KUBECONFIG_CASES.append(("endless-device", "/dev/zero", ["too large"]))


@pytest.mark.parametrize(("kc", "needles"), [c[1:] for c in KUBECONFIG_CASES], ids=[c[0] for c in KUBECONFIG_CASES])
@pytest.mark.parametrize("where", ["global", "command"])
def test_unusable_kubeconfig_option(where: str, kc: str, needles: list[str]) -> None:
    args = ["--kubeconfig", kc, "list"] if where == "global" else ["list", "--kubeconfig", kc]
    assert_error(invoke(args), cli.EXIT_API, [f"kubeconfig {kc}:", *needles])


@pytest.mark.parametrize(
    ("kc", "needles"), [c[1:] for c in KUBECONFIG_CASES[:4]], ids=[c[0] for c in KUBECONFIG_CASES[:4]]
)
def test_unusable_kubeconfig_from_environment(
    kc: str, needles: list[str], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(workdir / kc))
    assert_error(invoke(["get", "x"]), cli.EXIT_API, [kc, *needles])


def test_kubeconfig_environment_naming_no_file(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", f"{workdir / 'nope-1'}:{workdir / 'nope-2'}")
    assert_error(invoke(["list"]), cli.EXIT_API, ["$KUBECONFIG names no existing file", "nope-1"])


def test_kubeconfig_environment_naming_no_file_in_a_pod_falls_back_to_in_cluster(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(workdir / "nope"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "1")
    result = invoke(["list"])
    assert_error(result, cli.EXIT_API, [])
    # Outside a pod the loader finds no service-account token; inside one, the API server is 127.0.0.1:1.
    assert "in-cluster configuration:" in result.stderr or "cannot reach the API server" in result.stderr


def test_no_kubeconfig_at_all(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(workdir / "a-directory.yaml"))
    assert_error(invoke(["list"]), cli.EXIT_API, ["no usable Kubernetes configuration", "--kubeconfig"])


def test_unknown_context() -> None:
    assert_error(invoke(["--context", "nope", "list"]), cli.EXIT_API, ["no context 'nope' (contexts: ctx)"])


UNREACHABLE_CASES: list[tuple[str, list[str]]] = [
    ("list", ["list"]),
    ("get", ["get", "x"]),
    ("describe", ["describe", "x"]),
    ("logs", ["logs", "x"]),
    ("wait", ["wait", "x", "--timeout", "1"]),
    ("delete", ["delete", "x"]),
    ("top", ["top", "--once"]),
    ("submit", ["submit", "-f", "good.yaml"]),
    ("run", ["run", "good.yaml"]),
]


@pytest.mark.parametrize("args", [c[1] for c in UNREACHABLE_CASES], ids=[c[0] for c in UNREACHABLE_CASES])
def test_unreachable_api_server_fails_fast(args: list[str]) -> None:
    started = time.monotonic()
    result = invoke(args)
    assert time.monotonic() - started < 20
    assert_error(result, cli.EXIT_API, [f"cannot reach the API server {UNREACHABLE}", "Connection refused"])


# --- the one place that maps errors -------------------------------------------------------------------------


def test_a_bug_is_one_line_with_exit_code_70(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("oops")

    monkeypatch.setattr(cli, "_client", broken)
    assert_error(invoke(["list"]), cli.EXIT_INTERNAL, ["internal error: KeyError", "RUNYARD_DEBUG=1"])
    monkeypatch.setenv("RUNYARD_DEBUG", "1")
    assert isinstance(invoke(["list"]).exception, KeyError)


def test_no_arguments_still_prints_help() -> None:
    result = invoke([])
    assert "Usage" in result.output and "Traceback" not in result.output


# --- SDK: Client.submit sources ---------------------------------------------------------------------------


@pytest.fixture
def offline_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """A Client whose API calls fail the test: bad input must be refused before any request."""
    api = ApiClient()
    client = Client(api_client=api, namespace="ns")

    def no_call(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"unexpected API call {args[:2]}")

    monkeypatch.setattr(client, "_call", no_call)
    yield client
    api.close()


def cyclic() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(GOOD)
    doc["spec"]["loop"] = doc
    return doc


SUBMIT_CASES: list[tuple[str, Callable[[], Any], list[str]]] = [
    ("missing-yaml-path", lambda: "does-not-exist.yaml", ["does-not-exist.yaml: no such file"]),
    ("missing-yml-path", lambda: "runs/missing.yml", ["runs/missing.yml: no such file"]),
    ("missing-json-path", lambda: "missing.json", ["missing.json: no such file"]),
    ("missing-path-with-separator", lambda: "some/dir/run", ["some/dir/run: no such file"]),
    ("missing-pathlib-path", lambda: Path("missing.yaml"), ["missing.yaml: no such file"]),
    ("directory", lambda: "a-directory.yaml", ["a-directory.yaml: is a directory"]),
    ("non-utf8-file", lambda: "not-utf8.yaml", ["not-utf8.yaml: not UTF-8 text"]),
    ("empty-file", lambda: "empty.yaml", ["empty.yaml: expected one TrainingRun document, found 0"]),
    ("two-documents", lambda: "two-docs.yaml", ["two-docs.yaml: expected one TrainingRun document, found 2"]),
    ("metadata-oops-file", lambda: "metadata-oops.yaml", ["metadata-oops.yaml: invalid TrainingRun", "metadata:"]),
    ("alias-bomb", lambda: "bomb.yaml", ["bomb.yaml: expands to more than"]),
    ("malformed-text", lambda: "a: [\nb", ["manifest text: invalid YAML: line"]),
    ("list-text", lambda: "- a\n- b\n", ["manifest text: document 1 is a list"]),
    ("empty-text", lambda: "", ["manifest text: expected one TrainingRun document, found 0"]),
    ("metadata-oops-dict", lambda: {"metadata": "oops", "spec": {}}, ["metadata: Input should be a valid dict"]),
    ("spec-3-dict", lambda: {"metadata": {"name": "x"}, "spec": 3}, ["spec: Input should be a valid dict"]),
    ("non-string-keys", lambda: {("a",): 1}, ["not plain data"]),
    ("cyclic-dict", cyclic, ["not plain data", "Circular reference"]),
]


@pytest.mark.parametrize(("make", "needles"), [c[1:] for c in SUBMIT_CASES], ids=[c[0] for c in SUBMIT_CASES])
def test_submit_bad_source(offline_client: Client, make: Callable[[], Any], needles: list[str]) -> None:
    with pytest.raises(ValidationFailedError) as info:
        offline_client.submit(make())
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message


def test_submit_empty_name_is_not_ignored(offline_client: Client) -> None:
    with pytest.raises(ValidationFailedError, match=r"metadata\.name: Field required"):
        offline_client.submit("good.yaml", name="")


def test_submit_wrong_type_is_a_type_error(offline_client: Client) -> None:
    with pytest.raises(TypeError, match="not int"):
        offline_client.submit(123)  # type: ignore[arg-type]


def test_one_line_json_and_yaml_text_are_not_paths() -> None:
    doc = json.dumps({"apiVersion": "runyard.dev/v1alpha1", "metadata": {"name": "x"}})
    assert load_manifests(doc) == [json.loads(doc)]
    assert load_manifests("kind: runyard.dev/v1alpha1") == [{"kind": "runyard.dev/v1alpha1"}]


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda c: c.get(""), "a run name must not be empty"),
        (lambda c: c.delete(""), "a run name must not be empty"),  # would be DELETE on the whole collection
        (lambda c: c.get("../x"), "invalid run name '../x'"),
        (lambda c: c.events("A"), "invalid run name 'A'"),
        (lambda c: list(c.watch("a/b")), "invalid run name 'a/b'"),
        (lambda c: c.wait(""), "a run name must not be empty"),
        (lambda c: list(c.logs("")), "a run name must not be empty"),
        (lambda c: c.list(namespace="Bad/NS"), "invalid namespace 'Bad/NS'"),
        (lambda c: c.get("x", namespace=""), "a namespace must not be empty"),
    ],
    ids=[
        "get-empty",
        "delete-empty",
        "get-path",
        "events-upper",
        "watch-slash",
        "wait-empty",
        "logs-empty",
        "list-namespace",
        "get-empty-namespace",
    ],
)
def test_client_refuses_bad_names_before_calling_the_api(
    offline_client: Client, call: Callable[[Client], Any], needle: str
) -> None:
    with pytest.raises(ValidationFailedError, match=needle.replace(".", r"\.")):
        call(offline_client)


# --- SDK: Client(kubeconfig=...) -------------------------------------------------------------------------


@pytest.mark.parametrize(("kc", "needles"), [c[1:] for c in KUBECONFIG_CASES], ids=[c[0] for c in KUBECONFIG_CASES])
def test_client_with_unusable_kubeconfig(kc: str, needles: list[str]) -> None:
    with pytest.raises(ApiError) as info:
        Client(kubeconfig=kc)
    message = str(info.value)
    assert isinstance(info.value, RunyardError) and "\n" not in message
    assert message.startswith(f"kubeconfig {kc}: ")
    for needle in needles:
        assert needle in message


def test_client_with_invalid_namespace() -> None:
    with pytest.raises(ValidationFailedError, match="invalid namespace 'Bad_NS'"):
        Client(kubeconfig="kc-unreachable", namespace="Bad_NS")


def test_client_against_unreachable_server_fails_fast() -> None:
    with Client(kubeconfig="kc-unreachable") as client:
        assert client.namespace == "ns1"
        started = time.monotonic()
        with pytest.raises(ApiError) as info:
            client.list()
    assert time.monotonic() - started < 20
    assert (
        str(info.value)
        == f"list trainingruns: cannot reach the API server {UNREACHABLE}: [Errno 111] Connection refused"
    )
