"""Success policy: the run succeeds once every replica of its success roles completed (the launcher, chief or nodes)."""

from __future__ import annotations

from runyard_operator.policies.draft import Observed
from runyard_operator.policies.model import SUCCEEDED, RunFacts, Verdict


def role_done(facts: RunFacts, seen: Observed, role: str) -> bool:
    """The role's Job is Complete, or every one of its indexes has a Succeeded pod (the Job's own Complete trails)."""
    job = {j.role: j for j in seen.current_jobs}.get(role)
    if job is not None and job.stopped:
        return False  # its indexes ended because a suspension stopped them, not because training finished
    if job is not None and job.complete:
        return True
    done = {p.index for p in seen.current_pods if p.role == role and p.phase == "Succeeded"}
    return 0 < facts.replicas.get(role, 0) <= len(done)


def decide(facts: RunFacts, seen: Observed) -> Verdict | None:
    if facts.success_roles and all(role_done(facts, seen, role) for role in facts.success_roles):
        return Verdict(SUCCEEDED, "Succeeded", "all required replicas completed successfully")
    return None
