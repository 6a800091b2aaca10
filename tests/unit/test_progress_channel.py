"""The progress channel in pod templates: endpoint env and a projected, pod-bound token only when the operator has one."""

from __future__ import annotations

from dataclasses import replace

from runyard import constants as c
from runyard.builders import build_pod_template
from tests.unit.factories import CTX, make_run

URL = "http://runyard-progress.runyard-system.svc:8082/v1/progress"


def test_without_an_endpoint_pods_get_neither_env_nor_token() -> None:
    spec = build_pod_template(make_run("pytorch-small"), "node", CTX)["spec"]
    env = {e["name"] for e in spec["containers"][0]["env"]}
    assert c.ENV_PROGRESS_URL not in env and c.ENV_PROGRESS_TOKEN_FILE not in env
    assert all(v["name"] != c.PROGRESS_VOLUME for v in spec["volumes"])


def test_with_an_endpoint_pods_get_its_url_and_a_token_for_its_audience_only() -> None:
    spec = build_pod_template(make_run("pytorch-small"), "node", replace(CTX, progress_url=URL))["spec"]
    container = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    token_path = f"{c.PROGRESS_TOKEN_DIR}/{c.PROGRESS_TOKEN_FILE}"
    assert env[c.ENV_PROGRESS_URL] == URL and env[c.ENV_PROGRESS_TOKEN_FILE] == token_path
    (volume,) = [v for v in spec["volumes"] if v["name"] == c.PROGRESS_VOLUME]
    assert volume == {
        "name": c.PROGRESS_VOLUME,
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": c.PROGRESS_AUDIENCE,  # never the API server's: it authorises nothing there
                        "expirationSeconds": c.PROGRESS_TOKEN_SECONDS,
                        "path": c.PROGRESS_TOKEN_FILE,
                    }
                }
            ]
        },
    }
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == c.PROGRESS_VOLUME]
    assert mount == {"name": c.PROGRESS_VOLUME, "mountPath": c.PROGRESS_TOKEN_DIR, "readOnly": True}


def test_the_channel_env_is_reserved() -> None:
    from runyard.validation import validate_manifest

    manifest = make_run("pytorch-small").to_manifest()
    manifest["spec"]["env"] = [{"name": c.ENV_PROGRESS_URL, "value": "http://evil.example/collect"}]
    problems = [str(p) for p in validate_manifest(manifest)]
    assert any(c.ENV_PROGRESS_URL in p for p in problems), problems
