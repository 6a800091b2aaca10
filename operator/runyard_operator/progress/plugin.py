"""ProgressPlugin: serves POST /v1/progress to the runs' ranks and keeps status.progress, one write per run per 30 s.

The channel is built for many runs: a report costs the API server nothing (the operator keeps it in memory); the
only API traffic is one TokenReview per pod token (cached) and at most one status write per run per
`write_interval_seconds`, so 10,000 runs that all report cost at most 10,000 / 30 ≈ 333 status writes a second
(bench/RESULTS.md). A report is accepted only from a pod whose token the API server vouches for (audience
runyard.dev/progress, bound to that pod) and whose Job the run controls; anything else is refused and counted.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from runyard import constants as c
from runyard import templating
from runyard_operator import metrics
from runyard_operator.k8s import ApiError
from runyard_operator.plugins import PluginContext, Prepared, RunPlugin
from runyard_operator.policies import progress as pp

if TYPE_CHECKING:
    from runyard.api import TrainingRun
    from runyard_operator.config import OperatorConfig, ProgressConfig
    from runyard_operator.observe import PodView

logger = logging.getLogger(__name__)

EXTRA_POD_NAME = "authentication.kubernetes.io/pod-name"
EXTRA_POD_UID = "authentication.kubernetes.io/pod-uid"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
IDENTITY_TTL_SECONDS = 600.0  # a verdict is reused this long; a deleted pod is refused anyway (not in the cache)
REFUSAL_TTL_SECONDS = 10.0  # a refused token is not reviewed again for this long (a misconfigured pod loops)
MAX_IDENTITIES = 100_000
MAX_BODY_BYTES = 1024


@dataclass(frozen=True)
class Identity:
    """Who a token belongs to, as the API server said: a pod (namespace, name, UID) or nobody."""

    namespace: str = ""
    pod: str = ""
    pod_uid: str = ""
    expires: float = 0.0

    @property
    def known(self) -> bool:
        return bool(self.pod_uid)


def identity_from_review(status: Mapping[str, Any], now: float) -> Identity:
    """The pod behind an authenticated TokenReview status, or an unknown Identity (refused) for anything else."""
    if not status.get("authenticated") or status.get("audiences") not in (None, [c.PROGRESS_AUDIENCE]):
        return Identity(expires=now + REFUSAL_TTL_SECONDS)
    user = status.get("user") or {}
    username = str(user.get("username") or "")
    extra = user.get("extra") or {}
    names, uids = extra.get(EXTRA_POD_NAME) or [], extra.get(EXTRA_POD_UID) or []
    if not username.startswith(SERVICE_ACCOUNT_PREFIX) or len(names) != 1 or len(uids) != 1:
        return Identity(expires=now + REFUSAL_TTL_SECONDS)  # not a pod-bound ServiceAccount token
    namespace = username[len(SERVICE_ACCOUNT_PREFIX) :].split(":", 1)[0]
    return Identity(namespace, str(names[0]), str(uids[0]), now + IDENTITY_TTL_SECONDS)


def parse_report(body: Any) -> tuple[int, int | None, int]:
    """(step, total, rank) from a report's JSON; ValueError names the field that is wrong."""
    if not isinstance(body, dict):
        raise ValueError("body: must be a JSON object")

    def integer(name: str, minimum: int, optional: bool) -> int | None:
        value = body.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name}: must be an integer >= {minimum}")
        return value

    step = integer("step", 0, False)
    total = integer("total", 1, True)
    rank = integer("rank", 0, True)
    assert step is not None
    return step, total, rank or 0


class ProgressPlugin(RunPlugin):
    """See the module docstring."""

    name = "progress"

    def __init__(self, config: ProgressConfig, clock: Any = time.time) -> None:
        assert config.url
        self.config = config
        self.url: str = config.url
        self.clock = clock
        self.ctx: PluginContext | None = None
        self._runner: web.AppRunner | None = None
        self._states: dict[str, pp.RunProgress] = {}
        self._keys: dict[str, tuple[str, str]] = {}
        self._last_write: dict[str, float] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # Stall detection: each run's runPolicy.stallTimeoutSeconds, the silent ranks last written, a wake-up per run.
        self._timeouts: dict[str, int | None] = {}
        self._silent: dict[str, frozenset[str]] = {}
        self._stall_timers: dict[str, asyncio.TimerHandle] = {}
        self._identities: dict[str, Identity] = {}
        self._review_failed = False

    @classmethod
    def from_config(cls, config: OperatorConfig) -> ProgressPlugin | None:
        return cls(config.progress) if config.progress.url else None

    async def start(self, ctx: PluginContext) -> None:
        self.ctx = ctx
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post(c.PROGRESS_PATH, self._post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "0.0.0.0", self.config.port).start()
        logger.info("progress endpoint on :%d%s (pods use %s)", self.config.port, c.PROGRESS_PATH, self.url)

    async def stop(self) -> None:
        for handle in [*self._timers.values(), *self._stall_timers.values()]:
            handle.cancel()
        self._timers.clear()
        self._stall_timers.clear()
        if self._runner:
            await self._runner.cleanup()

    async def prepare(self, run: TrainingRun, status: Mapping[str, Any]) -> Prepared:
        interval = {"name": c.ENV_PROGRESS_INTERVAL, "value": f"{self.config.report_interval_seconds:g}"}
        return Prepared(env=[interval], build={"progress_url": self.url})

    async def finished(self, run: TrainingRun, status: Mapping[str, Any]) -> dict[str, Any]:
        # The end is written at once: it carries the last step reached, whatever the write pacing held back.
        uid = run.metadata.uid or ""
        state = self._states.get(uid)
        self._forget(uid)
        return {"progress": pp.render(state)} if state else {}  # a finished run has no silent ranks

    async def deleted(self, run: TrainingRun, status: Mapping[str, Any]) -> None:
        self._forget(run.metadata.uid or "")

    async def retiring(
        self, run: TrainingRun, status: Mapping[str, Any], attempt: int, pods: Sequence[PodView]
    ) -> dict[str, Any]:
        state = self._states.get(run.metadata.uid or "")
        return {"progress": pp.render(state)} if state and state.attempt == attempt else {}

    def _forget(self, uid: str) -> None:
        for store in (self._states, self._keys, self._last_write, self._timeouts, self._silent):
            store.pop(uid, None)
        for timers in (self._timers, self._stall_timers):
            handle = timers.pop(uid, None)
            if handle:
                handle.cancel()

    # --- the endpoint ---------------------------------------------------------------------------------

    async def _post(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or len(auth) < 16:
            return self._refuse(401, "unauthenticated", "a Bearer token (projected, audience runyard.dev/progress)")
        try:
            step, total, rank = parse_report(await request.json())
        except (ValueError, web.HTTPException) as err:
            return self._refuse(400, "invalid", str(err))
        identity = await self._identify(auth[len("Bearer ") :].strip())
        if identity is None:
            return self._refuse(503, "review_failed", "the API server could not review the token; retry later")
        if not identity.known:
            return self._refuse(401, "unauthenticated", "the API server does not vouch for this token")
        assert self.ctx is not None
        found = self.ctx.owned_pod(identity.pod_uid)
        if found is None or found[1].name != identity.pod or found[1].namespace != identity.namespace:
            return self._refuse(403, "not_owned", "the token's pod is not a replica of a TrainingRun")
        key, pod = found
        report = pp.RankReport(pod.name, pod.node, rank, step, total, self.clock(), pod.attempt)
        if not self._accept(key, pod.run_uid, report):
            return self._refuse(409, "stale", "the report is from an attempt the run has left")
        metrics.PROGRESS_REPORTS.labels("accepted").inc()
        return web.Response(status=204)

    def _refuse(self, status: int, outcome: str, why: str) -> web.Response:
        metrics.PROGRESS_REPORTS.labels(outcome).inc()
        return web.json_response({"error": why}, status=status)

    async def _identify(self, token: str) -> Identity | None:
        """The token's pod from the cache or a TokenReview; None when the API server could not be asked."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = self.clock()
        cached = self._identities.get(digest)
        if cached is not None and cached.expires > now:
            return cached
        assert self.ctx is not None
        try:
            status = await self.ctx.kube.review_token(token, c.PROGRESS_AUDIENCE)
        except ApiError as err:
            if not self._review_failed:
                self._review_failed = True
                logger.warning("progress: TokenReview failed (%s); reports are refused until it works", err)
            return None
        self._review_failed = False
        identity = identity_from_review(status, now)
        if len(self._identities) >= MAX_IDENTITIES:
            self._identities = {k: v for k, v in self._identities.items() if v.expires > now}
            if len(self._identities) >= MAX_IDENTITIES:
                self._identities.clear()
        self._identities[digest] = identity
        return identity

    # --- state and write pacing ---------------------------------------------------------------------

    def _accept(self, key: tuple[str, str], uid: str, report: pp.RankReport) -> bool:
        state = pp.fold(self._states.get(uid), report)
        if state is None:
            return False
        if uid not in self._timeouts:
            self._timeouts[uid] = self._stall_timeout(key)
        self._states[uid], self._keys[uid] = state, key
        if self._silent_changed(uid):
            self._write(uid)  # a silent rank spoke again: the Stalled condition goes at once, not paced
        elif uid not in self._timers:  # else a write is already due; it will carry this report
            delay = pp.write_delay(self._last_write.get(uid), time.monotonic(), self.config.write_interval_seconds)
            if delay <= 0:
                self._write(uid)
            else:
                self._timers[uid] = asyncio.get_running_loop().call_later(delay, self._write, uid)
        self._arm_stall_check(uid)
        return True

    def _stall_timeout(self, key: tuple[str, str]) -> int | None:
        assert self.ctx is not None
        body = self.ctx.run(key) or {}
        # The run's own spec over the templates recorded in its status, as the reconcile merges them.
        spec = templating.merge_spec(
            templating.layers_from_status(body.get("status") or {}) or [], body.get("spec") or {}
        )
        value = (spec.get("runPolicy") or {}).get("stallTimeoutSeconds")
        return int(value) if isinstance(value, int) else None

    def _running(self, uid: str, attempt: int) -> frozenset[str]:
        assert self.ctx is not None
        return frozenset(
            p.name for p in self.ctx.pods_of(uid) if p.phase == "Running" and not p.deleting and p.attempt == attempt
        )

    def _quiet(self, uid: str) -> list[pp.RankSeen]:
        state = self._states[uid]
        return pp.silent(state, self.clock(), self._timeouts.get(uid), self._running(uid, state.attempt))

    def _silent_changed(self, uid: str) -> bool:
        now = frozenset(r.pod + "/" + str(r.rank) for r in self._quiet(uid))
        return now != self._silent.get(uid, frozenset())

    def _arm_stall_check(self, uid: str) -> None:
        """One wake-up per run, at the moment its next rank would have been silent too long."""
        timeout = self._timeouts.get(uid)
        state = self._states.get(uid)
        if timeout is None or state is None:
            return
        delay = pp.next_stall_check(state, self.clock(), timeout, self._running(uid, state.attempt))
        old = self._stall_timers.pop(uid, None)
        if old:
            old.cancel()
        if delay is not None:
            self._stall_timers[uid] = asyncio.get_running_loop().call_later(delay + 0.5, self._check_stall, uid)

    def _check_stall(self, uid: str) -> None:
        self._stall_timers.pop(uid, None)
        if uid not in self._states:
            return
        if self._silent_changed(uid):
            self._write(uid)
        self._arm_stall_check(uid)

    def _write(self, uid: str) -> None:
        handle = self._timers.pop(uid, None)
        if handle:
            handle.cancel()
        state, key = self._states.get(uid), self._keys.get(uid)
        if state is None or key is None or self.ctx is None:
            return
        quiet = self._quiet(uid)
        self._silent[uid] = frozenset(r.pod + "/" + str(r.rank) for r in quiet)
        self._last_write[uid] = time.monotonic()
        self.ctx.contribute(key, uid, fields={"progress": pp.render(state, quiet)})
