"""TrainingRun invariants, written once: as CEL for the CRD and as Python checks for `validate_manifest`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic.alias_generators import to_snake

from runyard import constants as c
from runyard.frameworks import registry

if TYPE_CHECKING:
    from runyard.api.v1alpha1 import TrainingRunSpec

# Env names Runyard injects into every replica, whatever the framework.
RUNYARD_ENV: tuple[str, ...] = (
    c.ENV_REPLICA_INDEX,
    c.ENV_POD_NAME,
    c.ENV_NODE_NAME,
    c.ENV_NAMESPACE,
    c.ENV_RUN_NAME,
    c.ENV_RUN_UID,
    c.ENV_ROLE,
    c.ENV_FRAMEWORK,
    c.ENV_RESTART_ATTEMPT,
    c.ENV_NUM_REPLICAS,
    c.ENV_RUN_COORDINATOR,
    c.ENV_ARTIFACT_DIR,
    c.ENV_TENSORBOARD_DIR,
    c.ENV_RESUME_FROM,
    c.ENV_PROGRESS_URL,
    c.ENV_PROGRESS_TOKEN_FILE,
)


def framework_roles() -> dict[str, tuple[str, ...]]:
    """Framework name -> the roles it accepts, in canonical order (from the framework registry)."""
    return {p.name: p.roles for p in registry.profiles()}


# Spec fields that must not change once the run exists: a gang restart must recreate the same topology.
# `suspend` and `runPolicy.suspend` are deliberately absent: Kueue and users toggle them.
IMMUTABLE_FIELDS: tuple[str, ...] = (
    "framework",
    "templateRef",
    "image",
    "command",
    "args",
    "replicas",
    "nprocPerNode",
    "port",
    "mpi",
)
# CEL transition rules only run when a field exists on both sides: adding/removing these needs its own rule.
_OPTIONAL_IMMUTABLE: tuple[str, ...] = ("templateRef", "image", "command", "args", "nprocPerNode", "port", "mpi")


def reserved_env_names(framework: str) -> frozenset[str]:
    """Env names a user may not set in `spec.env` for `framework`."""
    env = registry.get(framework).env_names if framework in registry.names() else ()
    return frozenset(RUNYARD_ENV + env)


@dataclass(frozen=True)
class Rule:
    """One invariant: `cel` runs in the API server (`self` = spec); `check` returns offending field paths."""

    cel: str
    message: str
    field_path: str
    check: Callable[[TrainingRunSpec], list[str]]
    # Sharper message for one offending path (the CEL message cannot name the offending value).
    detail: Callable[[TrainingRunSpec, str], str] | None = None

    def to_cel(self) -> dict[str, str]:
        """The `x-kubernetes-validations` entry."""
        return {"rule": self.cel, "message": self.message, "fieldPath": self.field_path}

    def message_for(self, spec: TrainingRunSpec, path: str) -> str:
        """The message to show for an offending `path`."""
        return self.detail(spec, path) if self.detail else self.message


def _cel_list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{i}'" for i in items) + "]"


def fail_if(bad: bool, path: str) -> list[str]:
    """`[path]` when `bad`: the shape a Rule's check returns."""
    return [path] if bad else []


def _roles_rule(framework: str, roles: tuple[str, ...]) -> Rule:
    return Rule(
        cel=f"self.framework != '{framework}' || self.replicas.all(r, r in {_cel_list(roles)})",
        message=f"framework {framework} accepts only the roles {', '.join(roles)} in spec.replicas",
        field_path=".replicas",
        check=lambda s: [f"spec.replicas.{r}" for r in s.replicas if s.framework == framework and r not in roles],
    )


def _reserved_env_cel() -> str:
    clauses = [f"!(e.name in {_cel_list(RUNYARD_ENV)})"]
    for profile in registry.profiles():
        if profile.env_names:
            clauses.append(f"(self.framework != '{profile.name}' || !(e.name in {_cel_list(profile.env_names)}))")
    return "!has(self.env) || self.env.all(e, " + " && ".join(clauses) + ")"


def _reserved_env_check(spec: TrainingRunSpec) -> list[str]:
    reserved = reserved_env_names(spec.framework)
    return [f"spec.env[{i}].name" for i, e in enumerate(spec.env or ()) if e.name in reserved]


def _reserved_env_detail(spec: TrainingRunSpec, path: str) -> str:
    index = int(path.removeprefix("spec.env[").split("]", 1)[0])
    name = spec.env[index].name if spec.env else "?"
    return f"{name} is reserved: Runyard injects it for framework {spec.framework}"


def _settings_rule(field: str, frameworks: tuple[str, ...]) -> Rule:
    attr = to_snake(field)
    which = ", ".join(frameworks)
    return Rule(
        cel=f"!has(self.{field}) || self.framework in {_cel_list(frameworks)}",
        message=f"spec.{field} is only valid with framework {which}",
        field_path=f".{field}",
        check=lambda s: fail_if(getattr(s, attr) is not None and s.framework not in frameworks, f"spec.{field}"),
    )


def _framework_rules() -> list[Rule]:
    """What the framework registry decides: roles, framework-specific fields and each framework's own invariants."""
    profiles = registry.profiles()
    rules = [_roles_rule(p.name, p.roles) for p in profiles]
    for p in profiles:
        rules += p.rules
    settings = sorted({f for p in profiles for f in p.settings})
    rules += [_settings_rule(f, tuple(p.name for p in profiles if f in p.settings)) for f in settings]
    rules.append(
        Rule(
            cel=_reserved_env_cel(),
            message="spec.env must not set names Runyard injects (RUNYARD_* and the framework's contract)",
            field_path=".env",
            check=_reserved_env_check,
            detail=_reserved_env_detail,
        )
    )
    return rules


@cache
def spec_rules() -> tuple[Rule, ...]:
    """Every spec invariant, in the order the CRD lists them."""
    return (*_framework_rules(), *_GENERIC_RULES)


_GENERIC_RULES: tuple[Rule, ...] = (
    Rule(
        cel="has(self.image) || has(self.templateRef)",
        message="spec.image is required unless spec.templateRef names a template that sets it",
        field_path=".image",
        check=lambda s: fail_if(s.image is None and s.template_ref is None, "spec.image"),
    ),
    Rule(
        cel="!has(self.env) || self.env.all(e, !(has(e.value) && has(e.valueFrom)))",
        message="spec.env entries take either value or valueFrom, not both",
        field_path=".env",
        check=lambda s: [
            f"spec.env[{i}]" for i, e in enumerate(s.env or ()) if e.value is not None and e.value_from is not None
        ],
    ),
    # What the API server would refuse in the Jobs: caught at admission, naming the field, instead of a failed run.
    Rule(
        cel=(
            "!has(self.env) || self.env.all(e, !has(e.valueFrom) || "
            "(has(e.valueFrom.secretKeyRef) ? 1 : 0) + (has(e.valueFrom.configMapKeyRef) ? 1 : 0) + "
            "(has(e.valueFrom.fieldRef) ? 1 : 0) == 1)"
        ),
        message="spec.env[].valueFrom takes exactly one of secretKeyRef, configMapKeyRef, fieldRef",
        field_path=".env",
        check=lambda s: [
            f"spec.env[{i}].valueFrom"
            for i, e in enumerate(s.env or ())
            if e.value_from is not None
            and sum(
                x is not None
                for x in (e.value_from.secret_key_ref, e.value_from.config_map_key_ref, e.value_from.field_ref)
            )
            != 1
        ],
    ),
    Rule(
        cel="!has(self.envFrom) || self.envFrom.all(e, has(e.configMapRef) != has(e.secretRef))",
        message="spec.envFrom[] takes exactly one of configMapRef, secretRef",
        field_path=".envFrom",
        check=lambda s: [
            f"spec.envFrom[{i}]"
            for i, e in enumerate(s.env_from or ())
            if (e.config_map_ref is None) == (e.secret_ref is None)
        ],
    ),
    Rule(
        cel=(
            "!has(self.tolerations) || self.tolerations.all(t, !has(t.tolerationSeconds) || "
            "(has(t.effect) && t.effect == 'NoExecute'))"
        ),
        message="spec.tolerations[].tolerationSeconds is only valid with effect NoExecute",
        field_path=".tolerations",
        check=lambda s: [
            f"spec.tolerations[{i}].tolerationSeconds"
            for i, t in enumerate(s.tolerations or ())
            if t.toleration_seconds is not None and t.effect != "NoExecute"
        ],
    ),
    Rule(
        cel=(
            "!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && "
            "self.volumes.exists(v, v.name == m.name))"
        ),
        message="spec.volumeMounts[].name must name one of spec.volumes",
        field_path=".volumeMounts",
        check=lambda s: [
            f"spec.volumeMounts[{i}].name"
            for i, m in enumerate(s.volume_mounts or ())
            if m.name not in {str(v.get("name")) for v in s.volumes or () if isinstance(v, dict)}
        ],
    ),
)


def name_rules(max_length: int) -> list[dict[str, str]]:
    """Root-level rules on `metadata.name`: every child name derives from it and must be a DNS label."""
    return [
        {
            "rule": f"self.metadata.name.size() <= {max_length}",
            "message": (
                f"metadata.name must be at most {max_length} characters: child Jobs, pods and Services are "
                "named <name>-<role>-<index> and must stay valid DNS labels (63 characters)"
            ),
        },
        {
            "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
            "message": (
                "metadata.name must be a DNS-1035 label (lower-case letters, digits and '-', starting with a "
                "letter): it names the run's Service and the pods' hostnames"
            ),
        },
    ]


def _immutable(field: str) -> dict[str, str]:
    return {
        "rule": "self == oldSelf",
        "message": f"spec.{field} is immutable: delete and recreate the run to change it",
    }


def spec_schema_extra(schema: dict[str, Any]) -> None:
    """Attach the CEL rules to the spec's JSON schema (pydantic `json_schema_extra` hook)."""
    schema["x-kubernetes-validations"] = [r.to_cel() for r in spec_rules()] + [
        {
            "rule": " && ".join(f"has(self.{f}) == has(oldSelf.{f})" for f in _OPTIONAL_IMMUTABLE),
            "message": (
                "spec." + ", spec.".join(_OPTIONAL_IMMUTABLE) + " cannot be added or removed after creation: "
                "delete and recreate the run to change them"
            ),
        }
    ]
    props = schema["properties"]
    for field in IMMUTABLE_FIELDS:
        props[field].setdefault("x-kubernetes-validations", []).append(_immutable(field))
    props["nprocPerNode"]["x-kubernetes-validations"].append(
        {
            "rule": "type(self) == string ? self in ['auto', 'gpu', 'cpu'] : self >= 1",
            "message": "spec.nprocPerNode must be an integer >= 1 or one of auto, gpu, cpu",
        }
    )
