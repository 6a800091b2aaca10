"""TrainingRun manifests for tests: small and large runs per framework, built as wire-format dicts."""

from __future__ import annotations

import copy
from typing import Any

from runyard.api import TrainingRun
from runyard.builders import BuildContext
from runyard.validation import parse_run

UID = "11111111-2222-3333-4444-555555555555"
NAMESPACE = "team-a"
IMAGE = "ghcr.io/runyard/examples:0.1.0"
CTX = BuildContext(
    ssh_private_key="-----BEGIN OPENSSH PRIVATE KEY-----\ntest-private\n-----END OPENSSH PRIVATE KEY-----\n",
    ssh_public_key="ssh-ed25519 test-public runyard-test\n",
)


def manifest(name: str, spec: dict[str, Any], namespace: str = NAMESPACE, uid: str = UID) -> dict[str, Any]:
    """A TrainingRun manifest as the API server would return it (with uid)."""
    return {
        "apiVersion": "runyard.dev/v1alpha1",
        "kind": "TrainingRun",
        "metadata": {"name": name, "namespace": namespace, "uid": uid},
        "spec": {"image": IMAGE, **copy.deepcopy(spec)},
    }


SPECS: dict[str, dict[str, Any]] = {
    "pytorch-small": {
        "framework": "pytorch",
        "command": ["python", "train.py"],
        "replicas": {"node": {"replicas": 2, "resources": {"cpu": 1, "memory": "1Gi"}}},
    },
    "pytorch-large": {
        "framework": "pytorch",
        "command": ["torchrun", "train.py"],
        "args": ["--epochs", "10"],
        "replicas": {
            "node": {"replicas": 16, "resources": {"gpus": 8, "cpu": "96", "memory": "1500Gi", "sharedMemory": "64Gi"}}
        },
        "env": [
            {"name": "NCCL_DEBUG", "value": "INFO"},
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
        ],
        "envFrom": [{"configMapRef": {"name": "nccl-tuning"}}],
        "queueName": "gpu-queue",
        "priorityClassName": "training-high",
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000},
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "imagenet", "readOnly": True}}],
        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
        "podTemplate": {
            "metadata": {"annotations": {"example.com/team": "vision"}},
            "spec": {"containers": [{"name": "trainer", "imagePullPolicy": "Always"}]},
        },
        "tracking": {"experiment": "resnet", "trackers": ["mlflow", "tensorboard"]},
        "artifacts": {"store": "pvc://checkpoints/runs"},
    },
    "tensorflow-small": {
        "framework": "tensorflow",
        "replicas": {"chief": {"replicas": 1}, "worker": {"replicas": 2}, "ps": {"replicas": 1}},
    },
    "tensorflow-large": {
        "framework": "tensorflow",
        "port": 2345,
        "replicas": {
            "chief": {"replicas": 1, "resources": {"gpus": 1}},
            "worker": {"replicas": 8, "resources": {"gpus": 4}},
            "ps": {"replicas": 4, "resources": {"cpu": "8", "memory": "32Gi"}},
            "evaluator": {"replicas": 1, "resources": {"gpus": 1}, "command": ["python", "eval.py"]},
        },
        "runPolicy": {"suspend": True},
    },
    "mpi-small": {
        "framework": "mpi",
        "command": ["mpirun", "-n", "2", "python", "allreduce.py"],
        "mpi": {"implementation": "OpenMPI"},
        "replicas": {"launcher": {"replicas": 1}, "worker": {"replicas": 2}},
    },
    "mpi-large": {
        "framework": "mpi",
        "command": ["mpirun", "-n", "64", "python", "train.py"],
        "mpi": {"implementation": "Intel", "slotsPerWorker": 8, "sshPort": 2022},
        "replicas": {"launcher": {"replicas": 1}, "worker": {"replicas": 8, "resources": {"gpus": 8}}},
    },
    "jax-small": {
        "framework": "jax",
        "command": ["python", "train.py"],
        "replicas": {"node": {"replicas": 2}},
    },
    "jax-large": {
        "framework": "jax",
        "command": ["python", "train.py"],
        "port": 1234,
        "replicas": {"node": {"replicas": 32, "resources": {"gpus": 8}}},
    },
    "generic-small": {
        "framework": "generic",
        "command": ["sh", "-c", "echo $RUNYARD_REPLICA_INDEX"],
        "replicas": {"node": {"replicas": 1}},
    },
    "generic-large": {
        "framework": "generic",
        "command": ["sh", "-c", "echo $RUNYARD_REPLICA_INDEX"],
        "replicas": {"node": {"replicas": 4, "image": "busybox:1.36"}},
        "serviceAccountName": "trainer",
        "securityContext": {"runAsNonRoot": False, "readOnlyRootFilesystem": True},
    },
    "xgboost-small": {
        "framework": "xgboost",
        "command": ["python", "train.py"],
        "replicas": {"node": {"replicas": 2, "resources": {"cpu": 1, "memory": "1Gi"}}},
    },
    "xgboost-large": {
        "framework": "xgboost",
        "command": ["python", "train.py", "--rounds", "500"],
        "port": 9091,
        "replicas": {"node": {"replicas": 8, "resources": {"gpus": 1, "cpu": "16", "memory": "64Gi"}}},
        "tracking": {"experiment": "gbdt"},
        "artifacts": {"store": "s3://models/xgb", "s3": {"credentialsSecret": "s3-creds"}},
    },
    "deepspeed-small": {
        "framework": "deepspeed",
        "command": ["deepspeed", "train.py"],
        "args": ["--deepspeed_config", "ds_config.json"],
        "replicas": {"launcher": {"replicas": 1}, "worker": {"replicas": 2, "resources": {"cpu": 1}}},
    },
    "deepspeed-large": {
        "framework": "deepspeed",
        "command": ["deepspeed", "--launcher", "openmpi", "--hostfile=/job/hostfile", "train.py"],
        "mpi": {"slotsPerWorker": 8, "sshPort": 2022},
        "replicas": {
            "launcher": {"replicas": 1, "resources": {"cpu": "2", "memory": "4Gi"}},
            "worker": {"replicas": 4, "resources": {"gpus": 8, "sharedMemory": "64Gi"}},
        },
        "tracking": {"experiment": "llm"},
    },
}


def make_run(case: str, name: str | None = None, **spec_overrides: Any) -> TrainingRun:
    """The run of SPECS[case] (name defaults to the case), validated like `runyard validate` would."""
    spec = {**SPECS[case], **spec_overrides}
    return parse_run(manifest(name or case, spec))
