"""`runyard submit -f FILE...` in the common case without the Kubernetes client or the models (the console entry point).

kubectl apply takes about 70 ms; importing the kubernetes client and the models alone took the CLI ten times that. The
API server checks a TrainingRun with the CRD's schema and CEL rules, which are generated from the same models and rules
as the client-side checks, so this path sends every document as a server-side dry run first and creates them only
when all pass: "every document is checked before any is created" holds. Anything else goes to the full CLI, which
then does what it always did: another flag or global option, a file it cannot read as TrainingRuns, a kubeconfig that
needs an exec plugin, an auth provider or a proxy, and any document the API server refuses in the dry run (the full
CLI explains the refusal field by field from the models, with its usual exit codes).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import sys
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runyard import constants as c
from runyard.tls import ClientCert, client_context

API_TIMEOUT_SECONDS = 30.0
# Any of these in the environment means a proxy the full client knows how to use; this path does not.
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
_USER_FIELDS = frozenset(
    {"client-certificate", "client-certificate-data", "client-key", "client-key-data", "token", "tokenFile"}
)
_CLUSTER_FIELDS = frozenset(
    {"server", "certificate-authority", "certificate-authority-data", "insecure-skip-tls-verify"}
)


class HandOverError(Exception):
    """This path does not handle the command: the full CLI runs it instead."""


@dataclass(frozen=True)
class Args:
    files: list[Path]
    namespace: str | None = None
    kubeconfig: Path | None = None
    context: str | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class Target:
    """Where and as whom to send requests, from a kubeconfig."""

    host: str
    port: int
    ca_file: str | None
    ca_data: str | None
    insecure: bool
    cert: ClientCert | None
    token: str | None
    namespace: str | None


_VALUE_FLAGS = ("-f", "--file", "-n", "--namespace", "--kubeconfig", "--context")


def _options(argv: Sequence[str], allowed: tuple[str, ...]) -> tuple[dict[str, list[str]], bool]:
    """`--flag value` / `--flag=value` pairs (by the flag's long name) and whether --dry-run was given."""
    found: dict[str, list[str]] = {}
    dry_run = False
    it = iter(argv)
    for arg in it:
        flag, eq, inline = arg.partition("=")
        if flag in allowed:
            value = inline if eq else next(it, None)
            if value is None or value == "-":
                raise HandOverError(arg)
            long = {"-f": "--file", "-n": "--namespace"}.get(flag, flag)
            found.setdefault(long, []).append(value)
        elif arg == "--dry-run" and "--file" in allowed:
            dry_run = True
        else:
            raise HandOverError(arg)
    return found, dry_run


def parse_args(argv: Sequence[str]) -> Args:
    """`runyard [global options] submit [options]`: the global `--kubeconfig`, `--context`, `-n` and the command's
    `-f/--file` (repeatable), `-n`, `--kubeconfig`, `--context`, `--dry-run`; the command's win, as in the full CLI."""
    if "submit" not in argv:
        raise HandOverError("not submit")
    at = list(argv).index("submit")
    globals_, _ = _options(argv[:at], _VALUE_FLAGS[2:])
    local, dry_run = _options(argv[at + 1 :], _VALUE_FLAGS)
    if not local.get("--file"):
        raise HandOverError("no file")

    def last(flag: str) -> str | None:
        values = local.get(flag) or globals_.get(flag)
        return values[-1] if values else None

    kubeconfig = last("--kubeconfig")
    files = [Path(f) for f in local["--file"]]
    return Args(files, last("--namespace"), Path(kubeconfig) if kubeconfig else None, last("--context"), dry_run)


def _yaml_loader() -> type:
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_documents(files: Sequence[Path]) -> list[dict[str, Any]]:
    """Every YAML document of every file; each must be a TrainingRun with a name."""
    import yaml

    docs: list[dict[str, Any]] = []
    for path in files:
        try:
            found = [d for d in yaml.load_all(path.read_bytes(), Loader=_yaml_loader()) if d is not None]
        except (OSError, yaml.YAMLError) as exc:
            raise HandOverError(str(exc)) from None
        for doc in found:
            if not isinstance(doc, dict) or doc.get("kind") != c.KIND or doc.get("apiVersion") != c.API_VERSION:
                raise HandOverError("not a TrainingRun")
            meta = doc.get("metadata")
            if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or "status" in doc:
                raise HandOverError("a document the full CLI must explain")
            docs.append(doc)
    if not docs:
        raise HandOverError("no documents")
    return docs


def kubeconfig_files(kubeconfig: Path | None) -> list[Path]:
    """Like kubectl: `--kubeconfig`, else $KUBECONFIG (existing files), else ~/.kube/config."""
    if kubeconfig is not None:
        return [kubeconfig.expanduser()]
    env = [Path(p).expanduser() for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    existing = [p for p in env if p.exists()]
    if existing:
        return existing
    default = Path.home() / ".kube" / "config"
    if env or not default.exists():
        raise HandOverError("no kubeconfig")  # in-cluster, or the full CLI's error message
    return [default]


def target_of(configs: Sequence[dict[str, Any]], context: str | None) -> Target:
    """The cluster and credentials of `context` (default: the first current-context), merged as kubectl merges files:
    the first file that names an entry wins. Pure: the kubeconfigs are already read."""

    def first(section: str, name: str) -> dict[str, Any]:
        for config in configs:
            for entry in config.get(section) or []:
                if isinstance(entry, dict) and entry.get("name") == name:
                    found = entry.get(section[:-1])
                    return found if isinstance(found, dict) else {}
        raise HandOverError(f"no {section[:-1]} {name}")

    name = context or next((cfg.get("current-context") for cfg in configs if cfg.get("current-context")), None)
    if not name:
        raise HandOverError("no context")
    ctx = first("contexts", name)
    cluster, user = first("clusters", str(ctx.get("cluster"))), first("users", str(ctx.get("user")))
    if set(cluster) - _CLUSTER_FIELDS or set(user) - _USER_FIELDS:
        raise HandOverError("a kubeconfig feature the full client handles (exec, auth provider, proxy, ...)")
    url = urllib.parse.urlsplit(str(cluster.get("server") or ""))
    if url.scheme != "https" or not url.hostname or url.path.strip("/"):
        raise HandOverError("server")
    cert: ClientCert | None = None
    if user.get("client-certificate-data") and user.get("client-key-data"):
        cert = (base64.b64decode(user["client-certificate-data"]), base64.b64decode(user["client-key-data"]))
    elif user.get("client-certificate") and user.get("client-key"):
        cert = (str(user["client-certificate"]), str(user["client-key"]))
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(user["tokenFile"]).read_text().strip()
    ca_data = cluster.get("certificate-authority-data")
    return Target(
        host=url.hostname,
        port=url.port or 443,
        ca_file=cluster.get("certificate-authority"),
        ca_data=base64.b64decode(ca_data).decode() if ca_data else None,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        cert=cert,
        token=str(token) if token else None,
        namespace=ctx.get("namespace") or None,
    )


def submit(args: Args) -> int:
    """Dry-run every document, then create them; raises HandOverError (before anything is created) to hand over."""
    from runyard.advice import advisories

    if any(os.environ.get(v) for v in _PROXY_VARIABLES):
        raise HandOverError("proxy")
    docs = load_documents(args.files)
    import yaml

    configs = []
    for path in kubeconfig_files(args.kubeconfig):
        try:
            configs.append(yaml.load(path.read_bytes(), Loader=_yaml_loader()) or {})
        except (OSError, yaml.YAMLError):
            raise HandOverError("kubeconfig") from None
    target = target_of(configs, args.context)
    conn = http.client.HTTPSConnection(
        target.host,
        target.port,
        context=client_context(target.ca_file, target.ca_data, target.insecure, target.cert),
        timeout=API_TIMEOUT_SECONDS,
    )
    headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": "runyard-cli"}
    if target.token:
        headers["Authorization"] = f"Bearer {target.token}"

    def post(doc: dict[str, Any], dry_run: bool) -> tuple[int, dict[str, Any]]:
        ns = doc["metadata"].get("namespace") or args.namespace or target.namespace or "default"
        body = {**doc, "metadata": {**doc["metadata"], "namespace": ns}}
        path = f"/apis/{c.GROUP}/{c.VERSION}/namespaces/{urllib.parse.quote(ns)}/{c.PLURAL}"
        conn.request("POST", path + ("?dryRun=All" if dry_run else ""), json.dumps(body), headers)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {}
        return resp.status, answer if isinstance(answer, dict) else {}

    try:
        for doc in docs:
            if post(doc, dry_run=True)[0] != 201:
                raise HandOverError("refused")  # the full CLI names the fields (or the conflict) and exits as it does
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        raise HandOverError(f"connection: {exc}") from None
    try:
        for doc in docs:
            for note in advisories(doc):
                print(f"warning: {doc['metadata']['name']}: {note}", file=sys.stderr)
            if args.dry_run:
                print(f"trainingrun.runyard.dev/{doc['metadata']['name']} created (server dry run)")
                continue
            # From here on, never hand over: the full CLI would create the documents already created again.
            status, answer = post(doc, dry_run=False)
            if status != 201:  # a race after the dry run passed
                print(f"runyard: API error: {answer.get('message') or status}", file=sys.stderr)
                return 5
            print(f"trainingrun.runyard.dev/{doc['metadata']['name']} created")
    except (OSError, http.client.HTTPException) as exc:
        print(f"runyard: API error: {exc}", file=sys.stderr)
        return 5
    finally:
        conn.close()
    return 0


def main() -> None:
    """Console-script entry point: `runyard submit` on the fast path when it can, else the full CLI."""
    argv = sys.argv[1:]
    if "submit" in argv and not os.environ.get("RUNYARD_NO_FAST_SUBMIT"):
        try:
            code = submit(parse_args(argv))
        except HandOverError:
            pass
        else:
            sys.stdout.flush()
            sys.exit(code)
    from runyard.cli import main as cli_main

    cli_main()
