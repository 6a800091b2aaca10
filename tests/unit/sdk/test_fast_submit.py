"""The fast `runyard submit` path's pure parts: which commands it takes, and the kubeconfig entries it can use."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from runyard.fast_submit import Args, HandOverError, parse_args, target_of


def test_it_takes_files_namespace_context_and_dry_run_with_the_commands_options_winning() -> None:
    got = parse_args(["--kubeconfig", "/g", "-n", "glob", "submit", "-f", "a.yaml", "--file=b.yaml", "-n", "x"])
    assert got == Args([Path("a.yaml"), Path("b.yaml")], "x", Path("/g"), None, False)
    got = parse_args(["submit", "-f", "a.yaml", "--context=c", "--dry-run"])
    assert got == Args([Path("a.yaml")], None, None, "c", True)


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "x"],
        ["submit"],  # no file: the full CLI's usage error
        ["submit", "-f", "-"],  # stdin
        ["submit", "-f", "a.yaml", "--wait"],
        ["submit", "-f", "a.yaml", "--name", "b"],
        ["-v", "submit", "-f", "a.yaml"],
        ["submit", "--help"],
        ["-n"],
    ],
)
def test_anything_else_goes_to_the_full_cli(argv: list[str]) -> None:
    with pytest.raises(HandOverError):
        parse_args(argv)


def config(user: dict[str, Any], cluster: dict[str, Any] | None = None, namespace: str | None = None) -> dict[str, Any]:
    ctx: dict[str, Any] = {"cluster": "c", "user": "u"} | ({"namespace": namespace} if namespace else {})
    return {
        "current-context": "ctx",
        "contexts": [{"name": "ctx", "context": ctx}],
        "clusters": [{"name": "c", "cluster": cluster or {"server": "https://10.0.0.1:6443"}}],
        "users": [{"name": "u", "user": user}],
    }


def test_client_certificates_and_tokens_are_read_and_the_first_file_wins() -> None:
    pem = base64.b64encode(b"PEM").decode()
    target = target_of(
        [config({"client-certificate-data": pem, "client-key-data": pem}, namespace="team"), config({"token": "t"})],
        None,
    )
    assert (target.host, target.port, target.cert, target.token, target.namespace) == (
        "10.0.0.1", 6443, (b"PEM", b"PEM"), None, "team",
    )  # fmt: skip
    assert target_of([config({"token": "t"})], "ctx").token == "t"


@pytest.mark.parametrize(
    "user, cluster",
    [
        ({"exec": {"command": "aws"}}, None),
        ({"auth-provider": {"name": "oidc"}}, None),
        ({"username": "a", "password": "b"}, None),
        ({"token": "t"}, {"server": "https://h", "proxy-url": "http://proxy:3128"}),
        ({"token": "t"}, {"server": "http://insecure:8080"}),
    ],
)
def test_kubeconfigs_it_cannot_serve_go_to_the_full_client(
    user: dict[str, Any], cluster: dict[str, Any] | None
) -> None:
    with pytest.raises(HandOverError):
        target_of([config(user, cluster)], None)
