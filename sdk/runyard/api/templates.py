"""TrainingRunTemplate and ClusterTrainingRunTemplate (`runyard.dev/v1alpha1`): a platform's defaults and locks for runs."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo

from runyard.api.v1alpha1 import ObjectMeta, TrainingRunSpec, _Spec

# What a run itself must say: what it trains and its topology. Everything else may come from a template.
RUN_ONLY_FIELDS: tuple[str, ...] = ("framework", "replicas", "template_ref")

# Spec paths (camelCase, dotted) a template may lock. A locked path keeps the template's value: a run (or a more
# specific template) may leave it unset or repeat that value; setting anything else is refused, naming the path.
LOCKABLE_FIELDS: tuple[str, ...] = (
    "image",
    "command",
    "args",
    "env",
    "envFrom",
    "nodeSelector",
    "affinity",
    "tolerations",
    "priorityClassName",
    "serviceAccountName",
    "volumes",
    "volumeMounts",
    "securityContext",
    "podTemplate",
    "queueName",
    "runPolicy",
    "runPolicy.activeDeadlineSeconds",
    "runPolicy.backoffLimit",
    "runPolicy.ttlSecondsAfterFinished",
    "tracking",
    "tracking.experiment",
    "tracking.trackers",
    "tracking.tags",
    "artifacts",
    "artifacts.store",
    "artifacts.s3",
)


def _partial_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, info in TrainingRunSpec.model_fields.items():
        if name in RUN_ONLY_FIELDS:
            continue
        # Every field optional and without a default: a template holds only what its author wrote.
        partial = FieldInfo.merge_field_infos(info, default=None)
        partial.default_factory = None
        fields[name] = (Optional[info.annotation], partial)  # noqa: UP045 - create_model needs a runtime type
    return fields


TrainingRunDefaults: type[_Spec] = create_model(
    "TrainingRunDefaults",
    __base__=_Spec,
    __doc__="Any TrainingRun spec field except framework, replicas and templateRef; runs inherit what they leave unset.",
    **_partial_fields(),
)


class TemplateLocks(_Spec):
    """What runs using the template may not change."""

    fields: list[Literal[LOCKABLE_FIELDS]] | None = Field(  # type: ignore[valid-type]
        None,
        max_length=len(LOCKABLE_FIELDS),
        description=(
            "Spec paths that keep the template's value (unset in the template means runs may not set them): a run "
            "that sets one to anything else is refused, naming the path."
        ),
    )
    image_prefixes: list[str] | None = Field(
        None,
        max_length=64,
        description="Images (spec.image and every role's image) must start with one of these, e.g. `registry.corp/`.",
    )


class TrainingRunTemplateSpec(_Spec):
    """Defaults for runs that use the template, and the fields it locks."""

    description: str | None = Field(None, max_length=1024, description="What the template is for.")
    defaults: TrainingRunDefaults | None = Field(
        None, description="Spec fields runs inherit when they leave them unset (objects merge, lists replace)."
    )
    locks: TemplateLocks | None = Field(None, description="Fields runs may not change, and allowed image prefixes.")


class _Template(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", defer_build=True)

    api_version: Literal["runyard.dev/v1alpha1"] = Field("runyard.dev/v1alpha1", description="API version.")
    metadata: ObjectMeta = Field(default_factory=ObjectMeta, description="Standard object metadata.")
    spec: TrainingRunTemplateSpec = Field(default_factory=TrainingRunTemplateSpec, description="Defaults and locks.")


class TrainingRunTemplate(_Template):
    """Defaults and locks for the TrainingRuns of one namespace that name it in `spec.templateRef`."""

    kind: Literal["TrainingRunTemplate"] = Field("TrainingRunTemplate", description="Kind of the object.")


class ClusterTrainingRunTemplate(_Template):
    """Defaults and locks a platform sets for runs in every namespace (a default one applies to all runs)."""

    kind: Literal["ClusterTrainingRunTemplate"] = Field("ClusterTrainingRunTemplate", description="Kind of the object.")
