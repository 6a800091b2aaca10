"""The SDK's progress reporter against a real local HTTP endpoint: pacing, payload, token, failures, exit."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from runyard import constants as c
from runyard.progress import ProgressReporter, Report, post_report


class Sink:
    """A progress endpoint that records what it receives and answers with `status`."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, object]]] = []
        self.status = 204
        self.got = threading.Event()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                sink.received.append((self.headers.get("Authorization", ""), body))
                self.send_response(sink.status)
                self.end_headers()
                sink.got.set()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{c.PROGRESS_PATH}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.server.shutdown()
    s.server.server_close()


@pytest.fixture
def token(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("tok-1\n")
    return path


def test_post_report_sends_the_json_and_the_token_read_at_send_time(sink: Sink, token: Path) -> None:
    assert post_report(sink.url, token, Report(7, 100, 3)) == 204
    token.write_text("tok-2")  # the kubelet rotated it
    assert post_report(sink.url, token, Report(8, 100, 3)) == 204
    assert sink.received == [
        ("Bearer tok-1", {"step": 7, "total": 100, "rank": 3}),
        ("Bearer tok-2", {"step": 8, "total": 100, "rank": 3}),
    ]


def test_many_reports_in_one_interval_send_the_first_and_then_the_newest(sink: Sink, token: Path) -> None:
    reporter = ProgressReporter(sink.url, token, rank=0, interval=3600)
    reporter.set_total(1000)
    for step in range(500):
        reporter.report(step)
    assert sink.got.wait(10)
    reporter.close()  # the final report goes out at once, whatever the pacing
    steps = [body["step"] for _, body in sink.received]
    assert steps[-1] == 499 and len(steps) <= 2
    assert sink.received[-1][1]["total"] == 1000


def test_a_refusing_endpoint_never_raises_into_training(
    sink: Sink, token: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink.status = 403
    reporter = ProgressReporter(sink.url, token, interval=0.5)
    reporter.report(1)
    reporter.flush()
    reporter.report(2)
    reporter.flush()
    assert reporter.refused == 2 and reporter.sent == 0
    assert caplog.text.count("not accepted") == 1  # one warning, not one per report
    reporter.close()


def test_an_unreachable_endpoint_never_raises(token: Path) -> None:
    reporter = ProgressReporter("http://127.0.0.1:9/v1/progress", token, interval=0.5)
    reporter.report(1)
    reporter.flush()
    assert reporter.refused == 1
    reporter.close()


def test_outside_a_run_every_call_is_a_no_op() -> None:
    reporter = ProgressReporter.from_env({})
    assert not reporter.enabled
    reporter.report(3, total=10)
    reporter.close()
    assert reporter.sent == 0 and reporter._thread is None


def test_from_env_takes_rank_url_token_and_interval(token: Path) -> None:
    env = {c.ENV_PROGRESS_URL: "http://op:8082/v1/progress", c.ENV_PROGRESS_TOKEN_FILE: str(token),
           c.ENV_PROGRESS_INTERVAL: "2.5", "RANK": "5"}  # fmt: skip
    reporter = ProgressReporter.from_env(env)
    assert (reporter.url, reporter.token_file, reporter.interval, reporter.rank) == (
        "http://op:8082/v1/progress", token, 2.5, 5)  # fmt: skip


@pytest.mark.parametrize(("step", "total"), [(-1, None), (1, 0)])
def test_bad_values_are_refused_with_the_reason(step: int, total: int | None, token: Path) -> None:
    reporter = ProgressReporter(None, None)
    with pytest.raises(ValueError, match=r"step|total"):
        if total is not None:
            reporter.set_total(total)
        reporter.report(step)
