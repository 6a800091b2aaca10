"""Turns the pydantic TrainingRun models into a structural apiextensions.k8s.io/v1 CRD."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from runyard import constants as c
from runyard.api.rules import name_rules
from runyard.api.sweeps import TrainingRunSweep, TrainingRunSweepSpec, TrainingRunSweepStatus
from runyard.api.templates import ClusterTrainingRunTemplate, TrainingRunTemplate, TrainingRunTemplateSpec
from runyard.api.v1alpha1 import Phase, TrainingRun, TrainingRunSpec, TrainingRunStatus

# Keywords a structural schema may carry; the rest of pydantic's output (title, discriminator...) is dropped.
_KEEP = frozenset(
    {
        "type",
        "description",
        "default",
        "enum",
        "format",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "required",
        "nullable",
    }
)
_FORMATS = frozenset({"date-time", "date", "int32", "int64", "double", "float", "byte"})


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` wins (a field's description beats its model's docstring), but CEL rules of both are kept."""
    merged = {**base, **over}
    rules = base.get("x-kubernetes-validations", []) + over.get("x-kubernetes-validations", [])
    if rules:
        merged["x-kubernetes-validations"] = rules
    return merged


class _Converter:
    def __init__(self, defs: dict[str, Any], keep_defaults: tuple[str, ...] = ()) -> None:
        self.defs = defs
        # Paths whose schema defaults the API server may fill in. Elsewhere a stored spec holds only what its author
        # wrote, so a template's value is never shadowed by a default the API server put in the run.
        self.keep_defaults = keep_defaults

    def convert(self, node: dict[str, Any], where: str) -> dict[str, Any]:
        if "$ref" in node:
            target = self.defs[node["$ref"].rsplit("/", 1)[-1]]
            return self.convert(_merge(target, {k: v for k, v in node.items() if k != "$ref"}), where)
        if "allOf" in node and len(node["allOf"]) == 1:
            return self.convert(_merge(node["allOf"][0], {k: v for k, v in node.items() if k != "allOf"}), where)
        if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
            # Optional[X]: unset fields are left out on the wire, so the null branch is just dropped.
            branches = [b for b in node["anyOf"] if b != {"type": "null"}]
            if len(branches) != 1:
                raise ValueError(f"{where}: unions other than Optional[X] and int-or-string are not structural")
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            return self.convert(_merge(branches[0], rest), where)
        if "const" in node:
            node = {**{k: v for k, v in node.items() if k != "const"}, "enum": [node["const"]]}
        return self._plain(node, where)

    def _plain(self, node: dict[str, Any], where: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        int_or_string = bool(node.get("x-kubernetes-int-or-string"))
        for key, value in node.items():
            if key.startswith("x-kubernetes-"):
                if key == "x-kubernetes-int-or-string":
                    out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
                out[key] = value
            elif key == "properties":
                out["properties"] = {name: self.convert(sub, f"{where}.{name}") for name, sub in value.items()}
            elif key == "items":
                out["items"] = self.convert(value, f"{where}[]")
            elif key == "additionalProperties":
                if value is True:
                    out["x-kubernetes-preserve-unknown-fields"] = True
                elif isinstance(value, dict):
                    out["additionalProperties"] = self.convert(value, f"{where}.*")
            elif key == "default":
                if value is not None and not isinstance(value, dict | list) and where.startswith(self.keep_defaults):
                    out["default"] = value
            elif key == "format":
                if value in _FORMATS:
                    out["format"] = value
            elif key == "type" and int_or_string:
                continue
            elif key in _KEEP:
                out[key] = value
        if "type" not in out and not int_or_string:
            if (
                out.get("x-kubernetes-preserve-unknown-fields")
                and not node.get("anyOf")
                and set(node) <= {"x-kubernetes-preserve-unknown-fields"}
            ):
                return out  # a value of any type (an item of `values`): structural schemas allow it untyped
            if "properties" in out or out.get("x-kubernetes-preserve-unknown-fields"):
                out["type"] = "object"
            else:
                raise ValueError(f"{where}: schema has no type")
        if out.get("type") == "object" and not (
            "properties" in out or "additionalProperties" in out or out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["x-kubernetes-preserve-unknown-fields"] = True
        return out


def _model_schema(model: type[BaseModel], where: str, keep_defaults: tuple[str, ...] = ()) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _Converter(raw.pop("$defs", {}), keep_defaults).convert(raw, where)


_ENVELOPE: dict[str, Any] = {
    "apiVersion": {
        "type": "string",
        "description": "APIVersion defines the versioned schema of this representation of an object.",
    },
    "kind": {
        "type": "string",
        "description": "Kind is a string value representing the REST resource.",
    },
    "metadata": {"type": "object"},
}


def _status_schema() -> dict[str, Any]:
    schema = _model_schema(TrainingRunStatus, "status")
    # A run the operator has not reported on yet reads as Pending, like a Pod: the API server fills it in when it
    # reads the object, so a run that starts at once costs two status writes (Running, its end) instead of three.
    schema["default"] = {}
    schema["properties"]["phase"]["default"] = Phase.PENDING.value
    return schema


def build_schema() -> dict[str, Any]:
    """The structural openAPIV3Schema of TrainingRun."""
    return {
        "type": "object",
        "description": (TrainingRun.__doc__ or "").strip(),
        "required": ["spec"],
        "properties": {
            **_ENVELOPE,
            # Only replica counts keep their defaults (the CEL rules read them); see _Converter.keep_defaults.
            "spec": _model_schema(TrainingRunSpec, "spec", keep_defaults=("spec.replicas",)),
            "status": _status_schema(),
        },
        "x-kubernetes-validations": name_rules(c.MAX_RUN_NAME_LENGTH),
    }


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Phase",
        "type": "string",
        "jsonPath": ".status.phase",
        "description": "Coarse state of the run.",
    },
    {
        "name": "Framework",
        "type": "string",
        "jsonPath": ".spec.framework",
        "description": "Training framework.",
    },
    {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas", "description": "Ready pods."},
    {
        "name": "Total",
        "type": "integer",
        "jsonPath": ".status.totalReplicas",
        "description": "Pods of the run.",
    },
    {"name": "GPUs", "type": "integer", "jsonPath": ".status.gpus", "description": "GPUs allocated."},
    {"name": "Restarts", "type": "integer", "jsonPath": ".status.restarts", "description": "Gang restarts."},
    {
        "name": "Progress",
        "type": "string",
        "jsonPath": ".status.progress.summary",
        "description": "Steps reached of the total, from the ranks' progress reports.",
    },
    {
        "name": "ETA",
        "type": "string",
        "jsonPath": ".status.progress.remaining",
        "description": "Time left at the recent rate, as of the last report.",
    },
    {
        "name": "Template",
        "type": "string",
        "jsonPath": ".status.template.name",
        "description": "The most specific template applied (spec.templateRef, else a default template).",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Tracking",
        "type": "string",
        "jsonPath": ".status.tracking.url",
        "priority": 1,
        "description": "Link to the run in the experiment tracker.",
    },
]


def _crd(
    *,
    kind: str,
    plural: str,
    singular: str,
    short_names: tuple[str, ...],
    schema: dict[str, Any],
    columns: list[dict[str, Any]],
    cluster: bool = False,
    status: bool = True,
) -> dict[str, Any]:
    """One CustomResourceDefinition of the group: names, a single served and stored version, its schema and columns."""
    version: dict[str, Any] = {
        "name": c.VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": schema},
        "additionalPrinterColumns": columns,
    }
    if status:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{c.GROUP}"},
        "spec": {
            "group": c.GROUP,
            "scope": "Cluster" if cluster else "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": singular,
                "shortNames": list(short_names),
                "categories": list(c.CATEGORIES),
            },
            "versions": [version],
        },
    }


def build_crd() -> dict[str, Any]:
    """The TrainingRun CustomResourceDefinition (pure: same output for the same models)."""
    return _crd(
        kind=c.KIND,
        plural=c.PLURAL,
        singular=c.SINGULAR,
        short_names=c.SHORT_NAMES,
        schema=build_schema(),
        columns=PRINTER_COLUMNS,
    )


_TEMPLATE_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Locks",
        "type": "string",
        "jsonPath": ".spec.locks.fields",
        "description": "Spec paths runs may not change.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Description",
        "type": "string",
        "jsonPath": ".spec.description",
        "priority": 1,
        "description": "What the template is for.",
    },
]


def build_template_crd(cluster: bool) -> dict[str, Any]:
    """The TrainingRunTemplate (namespaced) or ClusterTrainingRunTemplate CRD."""
    model = ClusterTrainingRunTemplate if cluster else TrainingRunTemplate
    return _crd(
        kind=c.CLUSTER_TEMPLATE_KIND if cluster else c.TEMPLATE_KIND,
        plural=c.CLUSTER_TEMPLATE_PLURAL if cluster else c.TEMPLATE_PLURAL,
        singular=c.CLUSTER_TEMPLATE_SINGULAR if cluster else c.TEMPLATE_SINGULAR,
        short_names=c.CLUSTER_TEMPLATE_SHORT_NAMES if cluster else c.TEMPLATE_SHORT_NAMES,
        schema={
            "type": "object",
            "description": (model.__doc__ or "").strip(),
            "properties": {**_ENVELOPE, "spec": _model_schema(TrainingRunTemplateSpec, "spec")},
        },
        columns=_TEMPLATE_COLUMNS,
        cluster=cluster,
        status=False,
    )


_SWEEP_COLUMNS: list[dict[str, Any]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Running, Succeeded or Failed."},
    {"name": "Trials", "type": "integer", "jsonPath": ".status.trialsCreated", "description": "Trials created."},
    {"name": "Max", "type": "integer", "jsonPath": ".spec.maxTrials", "description": "Trials in all."},
    {"name": "Best", "type": "string", "jsonPath": ".status.best.name", "description": "The best finished trial."},
    {"name": "Value", "type": "number", "jsonPath": ".status.best.value", "description": "Its objective value."},
    {"name": "GPU-Hours", "type": "number", "jsonPath": ".status.gpuHours", "description": "GPU-hours used."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def build_sweep_crd() -> dict[str, Any]:
    """The TrainingRunSweep CRD; its `spec.trial` is the TrainingRun spec schema, CEL rules included."""
    return _crd(
        kind=c.SWEEP_KIND,
        plural=c.SWEEP_PLURAL,
        singular=c.SWEEP_SINGULAR,
        short_names=c.SWEEP_SHORT_NAMES,
        schema={
            "type": "object",
            "description": (TrainingRunSweep.__doc__ or "").strip(),
            "required": ["spec"],
            "properties": {
                **_ENVELOPE,
                "spec": _model_schema(TrainingRunSweepSpec, "spec", keep_defaults=("spec.trial.replicas",)),
                "status": _model_schema(TrainingRunSweepStatus, "status"),
            },
            # Trials are named <sweep>-<index>: the sweep's name leaves room for the index.
            "x-kubernetes-validations": name_rules(c.MAX_RUN_NAME_LENGTH - 4),
        },
        columns=_SWEEP_COLUMNS,
    )


CRD_HEADER = "# generated by make generate, do not edit (source: sdk/runyard/api/{source})\n"


def _dump(crd: dict[str, Any], source: str) -> str:
    import yaml

    return CRD_HEADER.format(source=source) + yaml.safe_dump(crd, sort_keys=True, width=120, allow_unicode=True)


def crd_yaml() -> str:
    """The TrainingRun CRD as the stable YAML text committed under crds/."""
    return _dump(build_crd(), "v1alpha1.py")


def crd_files() -> dict[str, str]:
    """Every CRD Runyard ships: file name under crds/ -> YAML text."""
    return {
        f"{c.GROUP}_{c.PLURAL}.yaml": crd_yaml(),
        f"{c.GROUP}_{c.TEMPLATE_PLURAL}.yaml": _dump(build_template_crd(cluster=False), "templates.py"),
        f"{c.GROUP}_{c.CLUSTER_TEMPLATE_PLURAL}.yaml": _dump(build_template_crd(cluster=True), "templates.py"),
        f"{c.GROUP}_{c.SWEEP_PLURAL}.yaml": _dump(build_sweep_crd(), "sweeps.py"),
    }
