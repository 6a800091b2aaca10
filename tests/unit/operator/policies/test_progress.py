"""Progress policy: folding rank reports, the rate over a window, status.progress, write pacing; endpoint parsing."""

from __future__ import annotations

import pytest

from runyard import constants as c
from runyard_operator.policies import progress as pp
from runyard_operator.progress.plugin import Identity, identity_from_review, parse_report


def report(step: int, at: float, *, rank: int = 0, pod: str = "r-worker-0", total: int | None = None,
           attempt: int = 0) -> pp.RankReport:  # fmt: skip
    return pp.RankReport(pod, "node-a", rank, step, total, at, attempt)


def folded(*reports: pp.RankReport) -> pp.RunProgress:
    state: pp.RunProgress | None = None
    for r in reports:
        state = pp.fold(state, r)
    assert state is not None
    return state


def test_rate_eta_and_summary_from_rank_zero() -> None:
    state = folded(report(0, 1000.0, total=1000), report(100, 1010.0), report(200, 1020.0, rank=1, pod="r-worker-1"))
    out = pp.render(state)
    assert out["step"] == 100 and out["totalSteps"] == 1000 and out["percent"] == 10
    assert out["stepsPerSecond"] == 10.0
    assert out["remaining"] == "1m30s"  # 900 steps at 10/s
    assert out["eta"] == "1970-01-01T00:18:20Z"  # from when rank 0 reached step 100 (1010 s) + 90 s
    assert out["summary"] == "10%(100/1000)"
    assert out["reportingRanks"] == 2 and out["attempt"] == 0


def test_without_rank_zero_the_furthest_rank_leads() -> None:
    state = folded(report(5, 1.0, rank=3), report(9, 2.0, rank=2))
    assert state.lead_step == 9


def test_without_total_or_rate_there_is_no_eta() -> None:
    out = pp.render(folded(report(7, 50.0)))
    assert out["summary"] == "7/?" and "eta" not in out and "stepsPerSecond" not in out


def test_done_shows_zero_left() -> None:
    out = pp.render(folded(report(0, 0.0, total=10), report(10, 5.0)))
    assert out["percent"] == 100 and out["remaining"] == "0s" and "eta" not in out


def test_rate_follows_the_recent_window() -> None:
    # 1 step/s for 20 minutes, then 10 steps/s: after 10 more minutes the rate reflects the new speed only.
    reports = [report(t, float(t)) for t in range(0, 1200, 60)]
    reports += [report(1200 + 10 * t, 1200.0 + t) for t in range(0, 601, 60)]
    state = folded(*reports)
    assert state.rate is not None and 9.0 < state.rate <= 10.0
    assert len(state.samples) <= 8  # the window, not the whole history


def test_a_new_attempt_starts_over_and_keeps_the_total() -> None:
    state = folded(report(0, 0.0, total=100), report(50, 10.0), report(40, 20.0, attempt=1))
    assert state.attempt == 1 and state.lead_step == 40 and state.total == 100 and state.rate is None


def test_a_replacement_pod_of_the_same_rank_supersedes_the_stopped_one() -> None:
    # Replicas recreated after a preemption (same attempt) resumed from step 30: their lower step is the truth.
    state = folded(report(0, 0.0, total=100), report(45, 10.0), report(31, 60.0, pod="r-worker-0-new"))
    assert state.lead_step == 31 and list(state.ranks) == ["r-worker-0-new/0"] and state.rate is None
    assert folded(report(10, 0.0), report(20, 5.0)).lead_step == 20  # the same pod keeps its history


def test_reports_of_an_older_attempt_are_refused() -> None:
    state = folded(report(10, 0.0, attempt=2))
    assert pp.fold(state, report(99, 1.0, attempt=1)) is None


def test_percent_never_passes_100() -> None:
    assert pp.render(folded(report(150, 0.0, total=100)))["percent"] == 100


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (59.6, "1m00s"), (750, "12m30s"), (11100, "3h05m"), (187200, "2d04h")]
)
def test_humanize(seconds: float, text: str) -> None:
    assert pp.humanize(seconds) == text


def test_write_delay_paces_one_write_per_interval() -> None:
    assert pp.write_delay(None, 100.0, 30.0) == 0.0
    assert pp.write_delay(100.0, 110.0, 30.0) == 20.0
    assert pp.write_delay(100.0, 131.0, 30.0) == 0.0


POD_USER = {
    "username": "system:serviceaccount:team-a:default",
    "extra": {
        "authentication.kubernetes.io/pod-name": ["r-worker-0-abcde"],
        "authentication.kubernetes.io/pod-uid": ["1234-uid"],
    },
}


def test_identity_is_the_pod_the_api_server_names() -> None:
    identity = identity_from_review({"authenticated": True, "user": POD_USER, "audiences": [c.PROGRESS_AUDIENCE]}, 0.0)
    assert identity == Identity("team-a", "r-worker-0-abcde", "1234-uid", identity.expires)
    assert identity.known


@pytest.mark.parametrize(
    "status",
    [
        {"authenticated": False, "error": "invalid bearer token"},
        {"authenticated": True, "user": POD_USER, "audiences": ["https://kubernetes.default.svc"]},
        {"authenticated": True, "user": {"username": "system:serviceaccount:team-a:default"}},  # not pod-bound
        {"authenticated": True, "user": {**POD_USER, "username": "alice"}},
    ],
)
def test_anything_but_a_pod_bound_token_for_our_audience_is_refused(status: dict[str, object]) -> None:
    assert not identity_from_review(status, 0.0).known


def test_parse_report_names_the_bad_field() -> None:
    assert parse_report({"step": 5, "total": 10, "rank": 1}) == (5, 10, 1)
    assert parse_report({"step": 0}) == (0, None, 0)
    for body, field in [({"step": -1}, "step"), ({"step": 1, "total": 0}, "total"), ({"step": True}, "step"),
                        ({"step": 1, "rank": "0"}, "rank"), ([], "body")]:  # fmt: skip
        with pytest.raises(ValueError, match=field):
            parse_report(body)
