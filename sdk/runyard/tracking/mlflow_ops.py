"""Blocking, idempotent MLflow operations shared by the operator and local runs (create-or-reuse, terminate).

Every function takes an `MlflowClient` and may block on the network: the operator calls them through
`asyncio.to_thread`. mlflow is imported lazily so that importing this module stays cheap.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from runyard import constants as c

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)

TerminalStatus = Literal["FINISHED", "FAILED", "KILLED"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"FINISHED", "FAILED", "KILLED"})
# MLflow's own limits (mlflow/utils/validation.py): longer values are rejected, so they are cut.
MAX_TAG_VALUE = 8000
MAX_PARAM_VALUE = 6000
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def redact(text: str) -> str:
    """Drop `user:password@` from every URL in `text`, so errors can go to logs and status."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


@dataclass(frozen=True)
class RunRef:
    """An MLflow run the TrainingRun's ranks join."""

    experiment_id: str
    run_id: str
    created: bool


def client_for(tracking_uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    """The id of experiment `name`, created (or restored from the trash) when needed; safe under races."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return str(experiment.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=artifact_location))
    except MlflowException:
        # Another creator won the race (RESOURCE_ALREADY_EXISTS): use its experiment.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


def find_run(client: MlflowClient, experiment_id: str, uid: str) -> str | None:
    """The oldest active run tagged with TrainingRun `uid`, if any."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{c.TAG_TRAININGRUN_UID}` = '{uid}'",
        order_by=["attributes.start_time ASC"],
        max_results=1,
    )
    return str(runs[0].info.run_id) if runs else None


def _active_run(client: MlflowClient, run_id: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as err:
        # Only "no such run" means gone; connection and auth errors must reach the caller, which retries.
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return run if run.info.lifecycle_stage != "deleted" else None


def ensure_run(
    client: MlflowClient,
    *,
    experiment: str,
    uid: str,
    run_name: str,
    tags: Mapping[str, str],
    params: Mapping[str, str],
    known_run_id: str | None = None,
    artifact_location: str | None = None,
) -> RunRef:
    """Reuse the run recorded in status, else the one tagged with `uid`, else create it; params logged once.

    Searching by tag before creating means a crash between `create_run` and the status write never makes a
    second run. Params missing from a reused run are logged (the crash may also have hit between the two calls).
    """
    from mlflow.entities import Param, RunTag

    run = _active_run(client, known_run_id) if known_run_id else None
    if run is not None:
        experiment_id = str(run.info.experiment_id)
    else:
        experiment_id = ensure_experiment(client, experiment, artifact_location)
        found = find_run(client, experiment_id, uid)
        run = _active_run(client, found) if found else None
    created = run is None
    if run is None:
        all_tags = {**{k: v[:MAX_TAG_VALUE] for k, v in tags.items()}, c.TAG_TRAININGRUN_UID: uid}
        run = client.create_run(experiment_id, tags=all_tags, run_name=run_name)
    run_id = str(run.info.run_id)
    logged = run.data.params if not created else {}
    missing = [Param(k, str(v)[:MAX_PARAM_VALUE]) for k, v in sorted(params.items()) if k not in logged]
    for start in range(0, len(missing), 100):  # log_batch takes at most 100 params per call
        client.log_batch(run_id, params=missing[start : start + 100])
    if not created:
        stale = {k: v for k, v in tags.items() if run.data.tags.get(k) != v}
        if stale:
            client.log_batch(run_id, tags=[RunTag(k, v[:MAX_TAG_VALUE]) for k, v in stale.items()])
    return RunRef(experiment_id, run_id, created)


def set_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    from mlflow.entities import RunTag

    items = [RunTag(k, v[:MAX_TAG_VALUE]) for k, v in tags.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, tags=items[start : start + 100])


def run_status(client: MlflowClient, run_id: str) -> str | None:
    """The run's status (RUNNING, FINISHED...), or None when the run is gone."""
    run = _active_run(client, run_id)
    return str(run.info.status) if run is not None else None


def terminate(client: MlflowClient, run_id: str, status: TerminalStatus) -> bool:
    """Set the run's terminal status when it differs; True when it changed. Gone runs are left alone.

    Ranks resume the run with `start_run` (RUNNING) and may `end_run` it (FINISHED) before others fail, so the
    TrainingRun's outcome always overrides what the ranks left behind.
    """
    current = run_status(client, run_id)
    if current is None or current == status:
        return False
    client.set_terminated(run_id, status)
    return True


def latest_metrics(client: MlflowClient, run_id: str) -> dict[str, float]:
    """Latest value of every metric of the run."""
    return {k: float(v) for k, v in client.get_run(run_id).data.metrics.items()}
