"""Attribution and per-run accounting: GPU-hours from allocations, time-weighted means with gaps, energy, resume."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runyard_operator.gpu.accounting import PodRef, RunAccount, SampleIndex, mig_fraction
from runyard_operator.gpu.parser import GPUSample

NS = "team"
POD = PodRef(name="r-node-0", uid="uid-0", node="n0", gpus=2, start=1000.0)


def sample(
    t: float, uuid: str = "GPU-a", *, util: float | None = 50.0, pod: str = "r-node-0", **kw: object
) -> GPUSample:
    base: dict[str, object] = {"node": "n0", "uuid": uuid, "index": uuid[-1], "time": t, "utilization": util}
    if pod:
        base |= {"namespace": NS, "pod": pod, "container": "trainer"}
    return GPUSample(**(base | kw))  # type: ignore[arg-type]


def feed(account: RunAccount, rounds: list[tuple[float, list[GPUSample]]], pods: list[PodRef] | None = None) -> None:
    for now, samples in rounds:
        account.observe(pods if pods is not None else [POD], SampleIndex(samples), now)


def test_gpu_hours_come_from_allocation_time_even_for_idle_or_unsampled_gpus() -> None:
    account = RunAccount(NS, max_gap=45)
    # Only GPU-a is ever reported; the pod requested 2 GPUs: the second still counts from the pod's start.
    feed(account, [(1000.0 + 15 * i, [sample(1000.0 + 15 * i, util=0.0)]) for i in range(1, 5)])
    assert account.gpu_seconds(1060.0) == pytest.approx(2 * 60.0)
    devices = sorted(a.device for a in account.open_allocations())
    assert devices == ["", "GPU-a"]
    # Pod gone: intervals close at the round that noticed, and the total stops growing.
    account.observe([], SampleIndex([]), 1075.0)
    assert account.gpu_seconds(5000.0) == pytest.approx(2 * 75.0)
    assert account.allocated() == 0


def test_time_weighted_mean_leaves_out_gaps() -> None:
    account = RunAccount(NS, max_gap=30)
    rounds = [
        (1010.0, [sample(1010.0, util=100.0)]),
        (1020.0, [sample(1020.0, util=100.0)]),  # 10 s at 100
        (1120.0, [sample(1120.0, util=0.0)]),  # 100 s gap: excluded, not averaged as 50
        (1130.0, [sample(1130.0, util=0.0)]),  # 10 s at 0
    ]
    feed(account, rounds, [PodRef("r-node-0", "uid-0", "n0", 1, 1000.0)])
    # The head (pod start 1000 to the first sample) takes the first interval's rate: 10 s more at 100.
    assert account.sampled_seconds == pytest.approx(30.0)
    assert account.avg_utilization == pytest.approx(200.0 / 3)
    assert account.idle_seconds == pytest.approx(10.0)
    assert account.estimated  # gauges only: the figures depend on the interval
    assert account.peak_utilization == 100.0
    assert account.gpu_seconds(1130.0) == pytest.approx(130.0)  # allocation time, gap included


def test_uneven_intervals_weigh_by_time() -> None:
    account = RunAccount(NS, max_gap=100)
    pods = [PodRef("r-node-0", "uid-0", "n0", 1, 0.0)]
    feed(
        account,
        [(0.0, [sample(0.0, util=90.0)]), (10.0, [sample(10.0, util=90.0)]), (70.0, [sample(70.0, util=30.0)])],
        pods,
    )
    # trapezoids: 10 s at 90, 60 s at mean(90, 30) = 60
    assert account.avg_utilization == pytest.approx((10 * 90 + 60 * 60) / 70)


def test_energy_counter_deltas_and_reset() -> None:
    account = RunAccount(NS)
    readings = [1_000_000.0, 4_000_000.0, 500_000.0, 1_500_000.0]  # driver reload between 2nd and 3rd
    feed(account, [(1000.0 + 10 * i, [sample(1000.0 + 10 * i, energy_mj=e)]) for i, e in enumerate(readings)])
    assert account.energy_mj == pytest.approx(3_000_000 + 500_000 + 1_000_000)
    assert not account.energy_estimated


def test_mig_energy_counted_once_per_physical_gpu_as_share() -> None:
    account = RunAccount(NS)
    pod = PodRef("r-node-0", "uid-0", "n0", 0, 1000.0)
    rounds = []
    for i, energy in enumerate([700_000.0, 1_400_000.0]):  # 700 J in 10 s: 70 W
        t = 1000.0 + 10 * i
        # The run holds two 1g slices of one GPU; both lines repeat the parent's counter.
        rounds.append(
            (
                t,
                [
                    sample(t, "GPU-m", gi_id="1", mig_profile="1g.10gb", energy_mj=energy, power_watts=70.0),
                    sample(t, "GPU-m", gi_id="2", mig_profile="1g.10gb", energy_mj=energy, power_watts=70.0),
                ],
            )
        )
    feed(account, rounds, [pod])
    assert account.energy_mj == pytest.approx(700_000 * 2 / 7)
    assert account.energy_estimated
    assert account.allocated() == pytest.approx(2 / 7)
    assert account.gpu_seconds(1010.0) == pytest.approx(10 * 2 / 7)
    assert account.avg_power == pytest.approx(70.0)
    assert mig_fraction("3g.40gb") == pytest.approx(3 / 7) and mig_fraction("") == 1.0


def test_missing_pod_labels_join_on_uuid() -> None:
    account = RunAccount(NS)
    pods = [PodRef("r-node-0", "uid-0", "n0", 1, 1000.0)]
    feed(account, [(1010.0, [sample(1010.0, util=80.0)])], pods)
    # The exporter lost the pod labels (#342): still ours by UUID; another GPU without labels is not.
    feed(account, [(1020.0, [sample(1020.0, util=60.0, pod=""), sample(1020.0, "GPU-z", util=99.0, pod="")])], pods)
    assert account.samples == 2
    assert account.avg_utilization == pytest.approx(70.0)
    assert account.peak_utilization == 80.0


def test_device_moving_to_another_pod_closes_the_interval() -> None:
    account = RunAccount(NS)
    pods = [PodRef("r-node-0", "uid-0", "n0", 1, 1000.0)]
    feed(account, [(1010.0, [sample(1010.0)]), (1020.0, [sample(1020.0, pod="someone-else")])], pods)
    (closed,) = [a for a in account.allocations if a.device == "GPU-a"]
    assert closed.end == 1020.0


def test_pod_uid_label_wins_over_a_reused_name() -> None:
    account = RunAccount(NS)
    pods = [PodRef("r-node-0", "uid-new", "n0", 1, 1000.0)]
    feed(account, [(1010.0, [sample(1010.0, pod_uid="uid-old"), sample(1010.0, "GPU-b", pod_uid="uid-new")])], pods)
    assert [a.device for a in account.open_allocations()] == ["GPU-b"]


def test_resume_from_status_neither_loses_nor_double_counts() -> None:
    pods = [PodRef("r-node-0", "uid-0", "n0", 2, 1000.0)]
    rounds = [
        (1000.0 + 10 * i, [sample(1000.0 + 10 * i, util=40.0, energy_mj=1e6 + 3e6 * i, power_watts=300.0)])
        for i in range(1, 7)
    ]
    straight = RunAccount(NS)
    feed(straight, rounds, pods)

    before = RunAccount(NS)
    feed(before, rounds[:3], pods)
    saved = before.summary(1030.0)
    resumed = RunAccount.from_status(NS, saved, max_gap=45)
    feed(resumed, rounds[3:], pods)

    assert resumed.gpu_seconds(1060.0) == pytest.approx(straight.gpu_seconds(1060.0), abs=0.01)
    assert resumed.energy_mj == pytest.approx(straight.energy_mj)  # counter resumes from the saved baseline
    assert resumed.avg_utilization == pytest.approx(40.0)
    assert resumed.avg_power == pytest.approx(300.0)
    # Only the one interval across the restart is unsampled (no per-device predecessor survives).
    assert resumed.sampled_seconds == pytest.approx(straight.sampled_seconds - 10.0)
    assert resumed.samples == straight.samples


def test_repeated_prometheus_samples_are_folded_once() -> None:
    account = RunAccount(NS)
    pods = [PodRef("r-node-0", "uid-0", "n0", 1, 1000.0)]
    window = [sample(1000.0 + 15 * i, util=50.0, energy_mj=1000.0 * i) for i in range(4)]
    feed(account, [(1050.0, window), (1065.0, [*window[1:], sample(1060.0, util=50.0, energy_mj=4000.0)])], pods)
    assert account.samples == 5
    assert account.energy_mj == pytest.approx(4000.0)
    assert account.sampled_seconds == pytest.approx(60.0)


def test_summary_shape() -> None:
    account = RunAccount(NS)
    feed(account, [(1010.0, [sample(1010.0, memory_used_bytes=2.0**30, energy_mj=5.0)])])
    summary = account.summary(1010.0)
    assert summary["gpuHours"] == pytest.approx(20 / 3600, abs=1e-6)
    assert summary["peakMemoryBytes"] == 2.0**30
    assert summary["lastSampleTime"] == "1970-01-01T00:16:50.000Z"
    assert {a["device"] for a in summary["allocations"]} == {"GPU-a", ""}
    assert "avgUtilization" not in summary  # one sample is no mean yet
    assert set(account.tracker_summary(1010.0)) >= {"gpu_hours", "gpu_energy_kwh", "gpu_mem_peak_bytes"}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(1, 40), st.floats(0, 100)), min_size=2, max_size=30),
    st.floats(5, 60),
)
def test_mean_stays_within_sample_range(steps: list[tuple[float, float]], gap: float) -> None:
    account = RunAccount(NS, max_gap=gap)
    pods = [PodRef("r-node-0", "uid-0", "n0", 1, 0.0)]
    t = 0.0
    for dt, util in steps:
        t += dt
        account.observe(pods, SampleIndex([sample(t, util=util)]), t)
    values = [u for _, u in steps]
    if account.avg_utilization is not None:
        assert min(values) - 1e-9 <= account.avg_utilization <= max(values) + 1e-9
    assert account.gpu_seconds(t) == pytest.approx(t)
    assert account.sampled_seconds <= t


def counted(t: float, busy: float, idle: float, sampled: float, energy_mj: float, **kw: object) -> GPUSample:
    """A reading of Runyard's agent: gauges plus busy/idle/sampled seconds and the energy counter."""
    return sample(
        t, util=kw.pop("util", 0.0), busy_seconds=busy, idle_seconds=idle, sampled_seconds=sampled,
        energy_mj=energy_mj, **kw,
    )  # fmt: skip


def test_counter_deltas_decide_utilisation_idle_and_power_and_the_edges_take_the_adjacent_rate() -> None:
    account = RunAccount(NS, max_gap=45)
    pod = PodRef("r-node-0", "uid-0", "n0", 1, 1000.0)
    # Between the reads the GPU was busy 6 of 15 s, idle 9 s (bursts a point gauge would miss: it reads 0 each time),
    # and drew 300 W on average. The agent restarted between the 3rd and 4th reads (its counters began again).
    reads = [
        counted(1005.0, 100.0, 50.0, 200.0, 1_000_000.0),
        counted(1020.0, 106.0, 59.0, 215.0, 5_500_000.0),
        counted(1035.0, 112.0, 68.0, 230.0, 10_000_000.0),
        counted(1050.0, 6.0, 9.0, 15.0, 14_500_000.0),
    ]
    feed(account, [(r.time, [r]) for r in reads], [pod])
    account.observe([], SampleIndex([]), 1060.0)  # the pod ended; the round that noticed closes it
    # 3 intervals of 15 s, plus the head (1000-1005) and the tail (1050-1060) at the adjacent rates.
    assert account.sampled_seconds == pytest.approx(45 + 5 + 10)
    assert account.avg_utilization == pytest.approx(40.0)
    assert account.idle_seconds == pytest.approx(0.6 * 60)
    assert account.avg_power == pytest.approx(300.0)
    assert account.energy_mj == pytest.approx(300.0 * 60 * 1000)  # 45 s of deltas + 15 s of edges at 300 W
    assert not account.estimated and "estimated" not in account.summary(1060.0)


def test_a_read_after_the_end_measures_the_tail_instead_of_extrapolating_it() -> None:
    pod = PodRef("r-node-0", "uid-0", "n0", 1, 1000.0)

    def run(final: list[GPUSample]) -> RunAccount:
        account = RunAccount(NS, max_gap=45)
        # Busy the whole first interval (400 W); then the job checkpoints, idle at 80 W, from 1020 to its end at 1030.
        feed(account, [(1000.0, [counted(1000.0, 0.0, 0.0, 0.0, 0.0)])], [pod])
        feed(account, [(1015.0, [counted(1015.0, 15.0, 0.0, 15.0, 6_000_000.0)])], [pod])
        account.finish(SampleIndex(final), 1030.0)
        return account

    # The operator reads at 1032, 2 s after the end; the pod is gone (no labels), and its GPU idles at 70 W since.
    after = counted(1032.0, 20.0, 12.0, 32.0, 8_940_000.0, util=0.0, power_watts=70.0, pod="")
    measured = run([after])
    assert measured.sampled_seconds == pytest.approx(30.0)
    assert measured.avg_utilization == pytest.approx(100.0 * 20 / 30)  # 5 s of the tail busy, 10 s idle
    assert measured.idle_seconds == pytest.approx(10.0)
    # 5 s at 400 W and 10 s at 80 W in the tail; the 2 s at 70 W after the end are taken out.
    assert measured.energy_mj == pytest.approx(6_000_000.0 + 2_000_000.0 + 800_000.0)
    assert measured.avg_power == pytest.approx(8_800.0 / 30)
    assert measured.peak_utilization == 0.0  # the read after the end is no peak of the run's
    assert all(a.end == 1030.0 for a in measured.allocations)
    # Without the read (or with one a plain DCGM exporter gave: no counters) the tail takes the busy interval's rate.
    for final in ([], [sample(1032.0, util=0.0, pod="", energy_mj=8_940_000.0)]):
        extrapolated = run(final)
        assert extrapolated.avg_utilization == pytest.approx(100.0)
        assert extrapolated.idle_seconds == 0.0


def test_a_read_before_the_end_is_folded_and_the_rest_extrapolated() -> None:
    account = RunAccount(NS, max_gap=45)
    pod = PodRef("r-node-0", "uid-0", "n0", 1, 1000.0)
    feed(account, [(1000.0, [counted(1000.0, 0.0, 0.0, 0.0, 0.0)])], [pod])
    feed(account, [(1015.0, [counted(1015.0, 15.0, 0.0, 15.0, 6_000_000.0)])], [pod])
    # The completion time lies after the read (clocks): the read counts whole, the last 2 s at its interval's rate.
    account.finish(SampleIndex([counted(1028.0, 15.0, 13.0, 28.0, 7_040_000.0, pod="")]), 1030.0)
    assert account.sampled_seconds == pytest.approx(30.0)
    assert account.idle_seconds == pytest.approx(15.0)
    assert account.energy_mj == pytest.approx(7_040_000.0 + 2 * 80_000.0)


def test_a_counter_reset_in_the_final_read_is_not_rewound() -> None:
    account = RunAccount(NS, max_gap=45)
    pod = PodRef("r-node-0", "uid-0", "n0", 1, 1000.0)
    rounds = [(t, [counted(t, t - 1000.0, 0.0, t - 1000.0, (t - 1000.0) * 400_000.0)]) for t in (1000.0, 1015.0)]
    feed(account, rounds, [pod])
    # The agent restarted after the last round: its counters began again, so the tail is extrapolated (all busy).
    account.finish(SampleIndex([counted(1032.0, 1.0, 2.0, 3.0, 500.0, pod="")]), 1030.0)
    assert account.sampled_seconds == pytest.approx(30.0)
    assert account.avg_utilization == pytest.approx(100.0)
