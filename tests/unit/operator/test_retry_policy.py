"""Which failures restart the gang: Kubeflow's ExitCode rule, reasons by name, and containers that never started."""

from __future__ import annotations

import pytest

from runyard_operator.policies.model import RetryPolicy


@pytest.mark.parametrize(
    ("exit_code", "reason", "want"),
    [
        (137, "OOMKilled", True),  # killed by a signal
        (143, "Error", True),
        (1, "Error", False),  # the program's own error
        (None, "Evicted", True),  # infrastructure, by name
        (None, "Unknown", True),
        (None, "Error", False),
        # runc could not exec the command (found on the real node: `deepspeed` missing from the image): exit 128 is
        # not a signal, and every restart would fail the same way.
        (128, "StartError", False),
        (128, "ContainerCannotRun", False),
    ],
)
def test_default_policy(exit_code: int | None, reason: str, want: bool) -> None:
    assert RetryPolicy().allows(exit_code, reason) is want


def test_a_start_error_is_retried_only_when_named() -> None:
    assert RetryPolicy(reasons=frozenset({"StartError"})).allows(128, "StartError")
    assert not RetryPolicy(exit_codes=frozenset({128})).allows(128, "StartError")


def test_categories_unset_keep_todays_defaults() -> None:
    policy = RetryPolicy.of(None, None, None)
    assert policy == RetryPolicy()
    assert policy.allows(137, "Error", "Infrastructure") and not policy.allows(1, "Error", "UserCode")


def test_a_listed_category_is_retried_whatever_its_exit_code() -> None:
    policy = RetryPolicy.of(None, None, ["UserCode", "GPUError"])
    assert policy.allows(1, "Error", "UserCode")
    assert policy.allows(1, "Error", "GPUError")


def test_naming_categories_drops_the_other_defaults() -> None:
    """`categories: [NodeLost]` means node loss only: signals and Evicted no longer retry by default."""
    policy = RetryPolicy.of(None, None, ["NodeLost"])
    assert policy.allows(None, "NodeLost", "NodeLost")
    assert not policy.allows(137, "Error", "Infrastructure")
    assert not policy.allows(None, "Evicted", "Evicted")
    assert not RetryPolicy.of(None, None, []).allows(137, "OOMKilled", "OOMKilled")


def test_exit_codes_and_reasons_still_count_next_to_categories() -> None:
    """A failure retries when any of the three allows it."""
    policy = RetryPolicy.of([3], ["OOMKilled"], ["Preempted"])
    assert policy.allows(3, "Error", "UserCode")
    assert policy.allows(137, "OOMKilled", "OOMKilled")
    assert policy.allows(143, "Preempted", "Preempted")
    assert not policy.allows(1, "Error", "UserCode")
    # Without categories, explicit exit codes and reasons behave as before.
    assert RetryPolicy.of([3], None, None) == RetryPolicy(exit_codes=frozenset({3}))
    assert RetryPolicy.of(None, ["X"], None) == RetryPolicy(reasons=frozenset({"X"}))
