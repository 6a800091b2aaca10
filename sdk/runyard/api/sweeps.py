"""TrainingRunSweep (`runyard.dev/v1alpha1`): a hyperparameter search whose trials are full TrainingRuns."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator
from pydantic.alias_generators import to_camel

from runyard.api.v1alpha1 import ENV_NAME_PATTERN, ObjectMeta, TrainingRunSpec, _Spec, _Status

MAX_PARAMETERS = 32
MAX_TRIALS = 1000
PARAM_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_.-]{0,62}$"


class Algorithm(StrEnum):
    """How trial parameters are chosen."""

    GRID = "grid"  # every combination of each parameter's `values` (or int range), in order
    RANDOM = "random"  # independent draws (Optuna's RandomSampler, seeded per trial)
    BAYESIAN = "bayesian"  # Optuna's TPE sampler over the finished trials


class Goal(StrEnum):
    """Whether the objective metric should go up or down."""

    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"


class ParameterType(StrEnum):
    """Kind of a search-space dimension."""

    FLOAT = "float"
    INT = "int"
    CATEGORICAL = "categorical"


class Parameter(_Spec):
    """One dimension of the search space and how a trial receives its value."""

    name: str = Field(pattern=PARAM_NAME_PATTERN, description="Name; the trial's tracker param and `{{name}}` in args.")
    type: ParameterType = Field(description="float, int or categorical.")
    min: float | None = Field(None, description="Lower bound (float, int).")
    max: float | None = Field(None, description="Upper bound, inclusive (float, int).")
    log: bool = Field(False, description="Sample on a log scale (float, int; min > 0).")
    step: float | None = Field(None, gt=0, description="Grid spacing (float, int; int defaults to 1).")
    values: list[str | float | int] | None = Field(
        None,
        min_length=1,
        max_length=256,
        description="Choices (categorical), or explicit grid points.",
        # Strings or numbers: a structural schema says "any scalar" with an untyped, preserved item.
        json_schema_extra={"items": {"x-kubernetes-preserve-unknown-fields": True}},
    )
    env: str | None = Field(
        None, pattern=ENV_NAME_PATTERN, description="Env variable of every replica that receives the value."
    )

    @model_validator(mode="after")
    def _bounds(self) -> Parameter:
        if self.type == ParameterType.CATEGORICAL:
            if not self.values:
                raise ValueError(f"parameter {self.name}: categorical needs `values`")
            return self
        if self.values is None and (self.min is None or self.max is None):
            raise ValueError(f"parameter {self.name}: {self.type} needs `min` and `max` (or `values`)")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"parameter {self.name}: min {self.min} is above max {self.max}")
        if self.log and (self.min is None or self.min <= 0):
            raise ValueError(f"parameter {self.name}: log scale needs min > 0")
        return self


class Objective(_Spec):
    """The metric that ranks trials, as the trials log it to their tracker."""

    metric: str = Field(min_length=1, max_length=250, description="Metric name (e.g. `val_accuracy`).")
    goal: Goal = Field(description="minimize or maximize.")


class EarlyStopping(_Spec):
    """Stop trials that are doing worse than the others at the same step (the median rule)."""

    rule: Literal["median"] = Field("median", description="`median`: below the median of finished trials at a step.")
    start_step: StrictInt = Field(1, ge=0, description="Never stop a trial before it has reported this step.")
    min_trials: StrictInt = Field(2, ge=1, description="Finished trials needed before any trial is stopped.")


class Budget(_Spec):
    """Limits beyond the trial count; no new trial starts once one is reached."""

    gpu_hours: float | None = Field(
        None, gt=0, description="GPU-hours of all trials together, from each run's own accounting (status.gpu)."
    )


class TrainingRunSweepSpec(_Spec):
    """What to search, how, and within which limits."""

    trial: TrainingRunSpec = Field(description="The TrainingRun every trial runs, with the parameters applied.")
    parameters: list[Parameter] = Field(min_length=1, max_length=MAX_PARAMETERS, description="The search space.")
    objective: Objective = Field(description="The metric to optimise.")
    algorithm: Algorithm = Field(Algorithm.RANDOM, description="grid, random or bayesian (Optuna TPE).")
    seed: StrictInt = Field(0, ge=0, description="Seed of the sampler: the same sweep proposes the same trials.")
    max_trials: StrictInt = Field(10, ge=1, le=MAX_TRIALS, description="Trials in all (grid: at most its size).")
    parallelism: StrictInt = Field(1, ge=1, le=64, description="Trials running at once.")
    budget: Budget | None = Field(None, description="GPU-hour budget.")
    early_stopping: EarlyStopping | None = Field(None, description="Stop poor trials early (median rule).")

    @model_validator(mode="after")
    def _unique(self) -> TrainingRunSweepSpec:
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise ValueError("parameters: names must be unique")
        if self.algorithm == Algorithm.GRID:
            for p in self.parameters:
                if p.type == ParameterType.FLOAT and p.values is None and p.step is None:
                    raise ValueError(f"parameter {p.name}: a grid over a float needs `values` or `step`")
        return self


class TrialStatus(_Status):
    """One trial as the sweep sees it."""

    name: str = Field(description="The trial's TrainingRun.")
    index: int = Field(description="Trial number, from 0.")
    params: dict[str, Any] | None = Field(None, description="Parameter values.")
    phase: str | None = Field(None, description="The TrainingRun's phase, or Pruned.")
    value: float | None = Field(None, description="Objective value (the metric's last value).")
    gpu_hours: float | None = Field(None, description="GPU-hours the trial used.")


class BestTrial(_Status):
    """The best finished trial so far."""

    name: str = Field(description="The trial's TrainingRun.")
    value: float = Field(description="Its objective value.")
    params: dict[str, Any] | None = Field(None, description="Its parameter values.")


class TrainingRunSweepStatus(_Status):
    """Observed state of a sweep, written by the operator."""

    phase: str | None = Field(None, description="Running, Succeeded or Failed.")
    message: str | None = Field(None, description="Why it is in this phase.")
    trials: list[TrialStatus] | None = Field(None, description="Every trial created so far.")
    best: BestTrial | None = Field(None, description="The best finished trial.")
    trials_created: int | None = Field(None, description="Trials created.")
    trials_running: int | None = Field(None, description="Trials not finished.")
    gpu_hours: float | None = Field(None, description="GPU-hours of all trials.")
    tracking_run_id: str | None = Field(None, description="The parent run in MLflow; trials are its children.")
    completion_time: str | None = Field(None, description="When the sweep ended (RFC 3339).")


class TrainingRunSweep(BaseModel):
    """A hyperparameter search: trials are full (multi-node) TrainingRuns created within a trial count and a budget."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", defer_build=True)

    api_version: Literal["runyard.dev/v1alpha1"] = Field("runyard.dev/v1alpha1", description="API version.")
    kind: Literal["TrainingRunSweep"] = Field("TrainingRunSweep", description="Kind of the object.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
    spec: TrainingRunSweepSpec = Field(description="Desired state.")
    status: TrainingRunSweepStatus | None = Field(None, description="Observed state.")
