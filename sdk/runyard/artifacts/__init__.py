"""Run artifacts: store layout, checksummed manifests, checkpoint discovery, resume and the S3 sync sidecar.

Importing this package needs only the standard library; boto3 is imported when an object store is used.
"""

from runyard.artifacts.checkpoints import Checkpoint, is_complete, newest_checkpoint
from runyard.artifacts.local import ArtifactsSummary, finalize, local_artifact_dir, local_run_dir
from runyard.artifacts.resume import resolve_resume
from runyard.artifacts.store import StoreURI, rank_name

__all__ = [
    "ArtifactsSummary",
    "Checkpoint",
    "StoreURI",
    "finalize",
    "is_complete",
    "local_artifact_dir",
    "local_run_dir",
    "newest_checkpoint",
    "rank_name",
    "resolve_resume",
]
