"""Pure sweep policy: each trial's parameters (grid, or Optuna's samplers over the finished trials), the trial's
TrainingRun, the median stopping rule, the GPU-hour budget and the best trial. Used by the operator and local sweeps.

A trial's parameters depend only on the sweep's spec, its index and the trials finished before it was proposed, and
they are written into the trial itself (`spec.tracking.params`), so a restarted controller never proposes them again.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runyard import constants as c
from runyard.api.sweeps import Algorithm, Goal, Parameter, ParameterType, TrainingRunSweepSpec

RUNNING, SUCCEEDED, FAILED, PRUNED = "running", "succeeded", "failed", "pruned"
_PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_.-]*)\s*\}\}")


@dataclass(frozen=True)
class TrialRecord:
    """What a sweep knows about one trial: its parameters, outcome and objective readings."""

    index: int
    name: str
    params: Mapping[str, Any]
    state: str = RUNNING
    value: float | None = None  # the objective's last reported value
    history: tuple[tuple[int, float], ...] = ()  # (step, value) of the objective, in step order
    gpu_hours: float = 0.0


@dataclass(frozen=True)
class Plan:
    """What the sweep does next."""

    create: tuple[int, ...] = ()  # trial indexes to create now
    prune: tuple[str, ...] = ()  # running trials to stop
    done: bool = False
    message: str = ""


def trial_name(sweep: str, index: int) -> str:
    return f"{sweep}-{index}"


def _grid_values(p: Parameter) -> list[Any]:
    if p.values is not None:
        return list(p.values)
    assert p.min is not None and p.max is not None
    if p.type == ParameterType.INT:
        return list(range(int(p.min), int(p.max) + 1, int(p.step or 1)))
    spacing = float(p.step or 0)
    count = math.floor((p.max - p.min) / spacing + 1e-9) + 1
    return [round(p.min + i * spacing, 12) for i in range(count)]


def grid_points(parameters: Sequence[Parameter]) -> list[dict[str, Any]]:
    """Every combination, the first parameter varying slowest."""
    names = [p.name for p in parameters]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(_grid_values(p) for p in parameters))]


def total_trials(spec: TrainingRunSweepSpec) -> int:
    """Trials the sweep runs in all: maxTrials, and for a grid at most its size."""
    if spec.algorithm == Algorithm.GRID:
        return min(spec.max_trials, len(grid_points(spec.parameters)))
    return spec.max_trials


def _distributions(parameters: Sequence[Parameter]) -> dict[str, Any]:
    import optuna

    out: dict[str, Any] = {}
    for p in parameters:
        if p.type == ParameterType.CATEGORICAL or p.values is not None:
            out[p.name] = optuna.distributions.CategoricalDistribution(list(p.values or ()))
        elif p.type == ParameterType.INT:
            assert p.min is not None and p.max is not None
            step = None if p.log else int(p.step or 1)
            out[p.name] = optuna.distributions.IntDistribution(int(p.min), int(p.max), log=p.log, step=step or 1)
        else:
            assert p.min is not None and p.max is not None
            out[p.name] = optuna.distributions.FloatDistribution(
                p.min, p.max, log=p.log, step=None if p.log else p.step
            )
    return out


def suggest(spec: TrainingRunSweepSpec, index: int, history: Sequence[TrialRecord]) -> dict[str, Any]:
    """The parameters of trial `index`: the grid's point, or the sampler's proposal given the finished trials."""
    if spec.algorithm == Algorithm.GRID:
        return grid_points(spec.parameters)[index]
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = _distributions(spec.parameters)
    # Seeded per trial: the proposal for index i is the same whenever (and however often) it is computed.
    seed = spec.seed * 1_000_003 + index
    sampler: Any
    if spec.algorithm == Algorithm.RANDOM:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        startup = max(2, min(10, spec.max_trials // 3))
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    direction = (
        optuna.study.StudyDirection.MAXIMIZE
        if spec.objective.goal == Goal.MAXIMIZE
        else optuna.study.StudyDirection.MINIMIZE
    )
    study = optuna.create_study(direction=direction, sampler=sampler)
    states = {SUCCEEDED: optuna.trial.TrialState.COMPLETE, PRUNED: optuna.trial.TrialState.PRUNED}
    for record in sorted(history, key=lambda r: r.index):
        if record.index >= index or record.state not in states or not _fits(record.params, dists):
            continue
        if record.state == SUCCEEDED and record.value is None:
            continue
        study.add_trial(
            optuna.trial.create_trial(
                params=dict(record.params),
                distributions={k: dists[k] for k in record.params if k in dists},
                value=record.value if record.state == SUCCEEDED else None,
                intermediate_values=dict(record.history),
                state=states[record.state],
            )
        )
    trial = study.ask(dists)
    return dict(trial.params)


def _fits(params: Mapping[str, Any], dists: Mapping[str, Any]) -> bool:
    """A finished trial's parameters lie in the current space (a trial read back from an older spec may not)."""
    import optuna

    if set(params) != set(dists):
        return False
    for key, value in params.items():
        dist = dists[key]
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            if value not in dist.choices:
                return False
        elif not isinstance(value, int | float) or not dist.low <= value <= dist.high:
            return False
    return True


def _better(goal: Goal, a: float, b: float) -> bool:
    return a > b if goal == Goal.MAXIMIZE else a < b


def _best_until(goal: Goal, history: Sequence[tuple[int, float]], step: int) -> float | None:
    values = [v for s, v in history if s <= step]
    if not values:
        return None
    return max(values) if goal == Goal.MAXIMIZE else min(values)


def should_stop(spec: TrainingRunSweepSpec, trial: TrialRecord, finished: Sequence[TrialRecord]) -> bool:
    """The median rule: the trial's best value up to its last step is worse than the median of the finished
    trials' best values up to that step (after `startStep`, once `minTrials` trials finished)."""
    rule = spec.early_stopping
    if rule is None or trial.state != RUNNING or not trial.history:
        return False
    step = trial.history[-1][0]
    if step < rule.start_step:
        return False
    peers = [b for r in finished if r.state == SUCCEEDED and (b := _best_until(spec.objective.goal, r.history, step))]
    peers = [b for b in peers if b is not None]
    if len(peers) < rule.min_trials:
        return False
    mine = _best_until(spec.objective.goal, trial.history, step)
    return mine is not None and _better(spec.objective.goal, statistics.median(peers), mine)


def best(spec: TrainingRunSweepSpec, records: Sequence[TrialRecord]) -> TrialRecord | None:
    """The succeeded trial with the best objective value (the lower index on a tie)."""
    done = [r for r in records if r.state == SUCCEEDED and r.value is not None and math.isfinite(r.value)]
    if not done:
        return None
    sign = -1.0 if spec.objective.goal == Goal.MAXIMIZE else 1.0
    return min(done, key=lambda r: (sign * float(r.value or 0.0), r.index))


def gpu_hours(records: Sequence[TrialRecord]) -> float:
    return float(sum(r.gpu_hours for r in records))


def plan(spec: TrainingRunSweepSpec, records: Sequence[TrialRecord]) -> Plan:
    """The next step: trials to create (up to `parallelism` running), trials to stop, or the end of the sweep."""
    finished = [r for r in records if r.state != RUNNING]
    prune = tuple(r.name for r in records if r.state == RUNNING and should_stop(spec, r, finished))
    running = sum(1 for r in records if r.state == RUNNING and r.name not in prune)
    total = total_trials(spec)
    created = {r.index for r in records}
    next_free = [i for i in range(total) if i not in created]
    spent = gpu_hours(records)
    over_budget = spec.budget is not None and spec.budget.gpu_hours is not None and spent >= spec.budget.gpu_hours
    create: tuple[int, ...] = ()
    if not over_budget:
        create = tuple(next_free[: max(spec.parallelism - running, 0)])
    if running == 0 and not create:
        if over_budget and next_free:
            message = f"GPU-hour budget spent ({spent:.3f} of {spec.budget.gpu_hours if spec.budget else 0}) after {len(records)} trials"
        else:
            message = f"all {len(records)} trials finished"
        return Plan(prune=prune, done=True, message=message)
    return Plan(create=create, prune=prune, message=f"{running + len(create)} trials running, {len(finished)} finished")


def trial_manifest(
    sweep: str,
    namespace: str | None,
    spec: TrainingRunSweepSpec,
    index: int,
    params: Mapping[str, Any],
    parent_run_id: str | None = None,
) -> dict[str, Any]:
    """The trial's TrainingRun: the sweep's trial spec with the parameters as env, `{{name}}` in command and args,
    tracker params, and (with MLflow) the sweep's parent run as its parent."""
    body = spec.trial.model_dump(mode="json", by_alias=True, exclude_none=True)
    values = {k: _text(v) for k, v in params.items()}

    def fill(items: list[str]) -> list[str]:
        return [_PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), item) for item in items]

    for key in ("command", "args"):
        if key in body:
            body[key] = fill(body[key])
    for role in (body.get("replicas") or {}).values():
        for key in ("command", "args"):
            if key in role:
                role[key] = fill(role[key])
    env = [e for e in body.get("env") or [] if e.get("name") not in {p.env for p in spec.parameters if p.env}]
    env += [{"name": p.env, "value": values[p.name]} for p in spec.parameters if p.env and p.name in values]
    if env:
        body["env"] = env
    tracking = body.setdefault("tracking", {})
    tracking["params"] = {**(tracking.get("params") or {}), **values}
    tracking.setdefault("runName", trial_name(sweep, index))
    tags = {**(tracking.get("tags") or {}), "runyard.sweep": sweep, "runyard.trial": str(index)}
    if parent_run_id:
        tags[c.TAG_MLFLOW_PARENT_RUN_ID] = parent_run_id
    tracking["tags"] = tags
    metadata: dict[str, Any] = {
        "name": trial_name(sweep, index),
        "labels": {c.LABEL_SWEEP: sweep, c.LABEL_TRIAL_INDEX: str(index)},
    }
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": c.API_VERSION, "kind": c.KIND, "metadata": metadata, "spec": body}


def params_of(run_spec: Mapping[str, Any], spec: TrainingRunSweepSpec) -> dict[str, Any]:
    """A trial's parameters read back from its TrainingRun (`spec.tracking.params`), typed as the search space says."""
    raw = ((run_spec.get("tracking") or {}).get("params")) or {}
    out: dict[str, Any] = {}
    for p in spec.parameters:
        if p.name not in raw:
            continue
        text = str(raw[p.name])
        out[p.name] = _typed(p, text)
    return out


def _typed(p: Parameter, text: str) -> Any:
    if p.values is not None:
        for v in p.values:
            if _text(v) == text:
                return v
        return text
    try:
        return int(text) if p.type == ParameterType.INT else float(text)
    except ValueError:
        return text


def _text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)
