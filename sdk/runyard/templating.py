"""Pure template policy: the layers a run inherits from, how they merge into its spec, and which locks it breaks.

Merge (outermost first: default cluster templates by name, then `spec.templateRef`, then the run): objects merge key
by key, the later layer winning; lists and scalars are replaced whole, except `env`, `volumes` and `volumeMounts`,
which merge by `name` (a later entry of the same name replaces the earlier one in place, new names are appended).
`framework`, `replicas` and `templateRef` come from the run only.

Locks: each template's `locks.fields` keep its own value at those paths (absent in the template: runs may not set
them); any later layer that sets a locked path to something else is refused, naming the path and the template.
`locks.imagePrefixes` bound the effective images. Locks of every layer apply, so a run cannot escape a default
template's locks by naming another template.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from runyard import constants as c
from runyard.api.templates import TrainingRunTemplateSpec
from runyard.api.v1alpha1 import TrainingRun
from runyard.validation import Problem, checked_run

_BY_NAME = frozenset({"env", "volumes", "volumeMounts"})
_RUN_ONLY = ("framework", "replicas", "templateRef")
_MISSING: Any = object()


@dataclass(frozen=True)
class TemplateLayer:
    """One template as the run inherits it: its identity, defaults and locks (plain camelCase dicts)."""

    kind: str
    name: str
    uid: str = ""
    generation: int = 0
    defaults: Mapping[str, Any] = field(default_factory=dict)
    locked: tuple[str, ...] = ()
    image_prefixes: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.kind} {self.name}"

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> TemplateLayer:
        """From a template object as the API returns it; raises ValueError naming what is wrong with it."""
        meta = obj.get("metadata") or {}
        kind, name = str(obj.get("kind") or c.TEMPLATE_KIND), str(meta.get("name") or "")
        try:
            spec = TrainingRunTemplateSpec.model_validate(obj.get("spec") or {})
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()[:5])
            raise ValueError(f"{kind} {name} is invalid: {problems}") from None
        raw = obj.get("spec") or {}
        locks = spec.locks
        return cls(
            kind=kind,
            name=name,
            uid=str(meta.get("uid") or ""),
            generation=int(meta.get("generation") or 0),
            defaults=dict(raw.get("defaults") or {}),
            locked=tuple(locks.fields or ()) if locks else (),
            image_prefixes=tuple(locks.image_prefixes or ()) if locks else (),
        )

    @classmethod
    def from_status(cls, entry: Mapping[str, Any]) -> TemplateLayer:
        """From `status.template.applied[]`: the layer exactly as it was applied when the run was first seen."""
        locks = entry.get("locks") or {}
        return cls(
            kind=str(entry.get("kind") or ""),
            name=str(entry.get("name") or ""),
            uid=str(entry.get("uid") or ""),
            generation=int(entry.get("generation") or 0),
            defaults=dict(entry.get("defaults") or {}),
            locked=tuple(locks.get("fields") or ()),
            image_prefixes=tuple(locks.get("imagePrefixes") or ()),
        )

    def to_status(self) -> dict[str, Any]:
        locks: dict[str, Any] = {}
        if self.locked:
            locks["fields"] = list(self.locked)
        if self.image_prefixes:
            locks["imagePrefixes"] = list(self.image_prefixes)
        entry: dict[str, Any] = {"kind": self.kind, "name": self.name}
        if self.uid:
            entry["uid"] = self.uid
        if self.generation:
            entry["generation"] = self.generation
        if self.defaults:
            entry["defaults"] = json.loads(json.dumps(self.defaults))
        if locks:
            entry["locks"] = locks
        return entry


def template_status(layers: Sequence[TemplateLayer]) -> dict[str, Any] | None:
    """`status.template` for the layers applied (None when there are none)."""
    if not layers:
        return None
    return {"name": layers[-1].name, "applied": [layer.to_status() for layer in layers]}


def layers_from_status(status: Mapping[str, Any]) -> list[TemplateLayer] | None:
    """The layers recorded when the run was first seen, or None when none were recorded."""
    recorded = status.get("template")
    if not isinstance(recorded, Mapping):
        return None
    return [TemplateLayer.from_status(e) for e in recorded.get("applied") or () if isinstance(e, Mapping)]


def order_layers(defaults: Iterable[TemplateLayer], referenced: TemplateLayer | None) -> list[TemplateLayer]:
    """Default cluster templates by name, then the run's own template (once, if it is also a default)."""
    layers = sorted(defaults, key=lambda t: t.name)
    if referenced is not None and all((t.kind, t.name) != (referenced.kind, referenced.name) for t in layers):
        layers.append(referenced)
    return layers


def is_default(obj: Mapping[str, Any]) -> bool:
    """A ClusterTrainingRunTemplate labelled as a default: it applies to every run."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return obj.get("kind") == c.CLUSTER_TEMPLATE_KIND and labels.get(c.LABEL_DEFAULT_TEMPLATE) == "true"


def layers_for(doc: Mapping[str, Any], templates: Iterable[Mapping[str, Any]]) -> list[TemplateLayer]:
    """The layers a run inherits from among `templates` (objects from files or the cluster), as the operator picks them.

    Raises ValueError when the run's `spec.templateRef` names none of them.
    """
    objs = list(templates)
    defaults = [TemplateLayer.from_object(o) for o in objs if is_default(o)]
    ref = (doc.get("spec") or {}).get("templateRef")
    referenced = None
    if isinstance(ref, Mapping) and ref.get("name"):
        kind = str(ref.get("kind") or c.TEMPLATE_KIND)
        found = [o for o in objs if o.get("kind") == kind and (o.get("metadata") or {}).get("name") == ref["name"]]
        if not found:
            raise ValueError(f"spec.templateRef: {kind} {ref['name']} not found")
        referenced = TemplateLayer.from_object(found[0])
    return order_layers(defaults, referenced)


def _merge_named(base: list[Any], over: list[Any]) -> list[Any]:
    out = list(base)
    index = {item.get("name"): i for i, item in enumerate(out) if isinstance(item, Mapping)}
    for item in over:
        key = item.get("name") if isinstance(item, Mapping) else None
        if key is not None and key in index:
            out[index[key]] = item
        else:
            out.append(item)
    return out


def _merge(base: Any, over: Any, key: str = "") -> Any:
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base[k], v, k) if k in base else v
        return out
    if key in _BY_NAME and isinstance(base, list) and isinstance(over, list):
        return _merge_named(base, over)
    return over


def merge_spec(layers: Sequence[TemplateLayer], spec: Mapping[str, Any]) -> dict[str, Any]:
    """The run's effective spec: each layer's defaults under the run's own fields."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = _merge(merged, {k: v for k, v in layer.defaults.items() if k not in _RUN_ONLY})
    return dict(_merge(merged, dict(spec)))


def _at(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, Mapping) or part not in obj:
            return _MISSING
        obj = obj[part]
    return obj


def _show(value: Any) -> str:
    if value is _MISSING:
        return "unset"
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 120 else text[:117] + "..."


def lock_problems(layers: Sequence[TemplateLayer], spec: Mapping[str, Any]) -> list[Problem]:
    """Every locked path that a later layer or the run sets to another value, and every image no prefix allows."""
    problems: list[Problem] = []
    for i, layer in enumerate(layers):
        for path in layer.locked:
            kept = _at(layer.defaults, path)
            for source, values in [*((f"{t.ref}", t.defaults) for t in layers[i + 1 :]), ("the run", spec)]:
                value = _at(values, path)
                if value is _MISSING or value == kept:
                    continue
                setter = "" if source == "the run" else f" ({source} sets it)"
                problems.append(
                    Problem(
                        f"spec.{path}",
                        f"locked by {layer.ref} to {_show(kept)}{setter}: leave it unset or ask the platform team",
                    )
                )
    merged = merge_spec(layers, spec)
    images = [("spec.image", merged.get("image"))] + [
        (f"spec.replicas.{role}.image", r.get("image"))
        for role, r in (merged.get("replicas") or {}).items()
        if isinstance(r, Mapping) and r.get("image")
    ]
    for layer in layers:
        if not layer.image_prefixes:
            continue
        for path, image in images:
            if isinstance(image, str) and not image.startswith(layer.image_prefixes):
                problems.append(
                    Problem(
                        path,
                        f"{image} is not allowed by {layer.ref}: images must start with "
                        f"{' or '.join(layer.image_prefixes)} (locks.imagePrefixes)",
                    )
                )
    return problems


def effective_manifest(doc: Mapping[str, Any], layers: Sequence[TemplateLayer]) -> tuple[dict[str, Any], list[Problem]]:
    """The run with its templates applied, and every problem: broken locks, then the merged spec's own validation."""
    merged_doc, _, problems = effective_run(doc, layers)
    return merged_doc, problems


def effective_run(
    doc: Mapping[str, Any], layers: Sequence[TemplateLayer]
) -> tuple[dict[str, Any], TrainingRun | None, list[Problem]]:
    """`effective_manifest` plus the merged run as parsed by its validation (None when the schema refuses it)."""
    spec = doc.get("spec") if isinstance(doc.get("spec"), Mapping) else {}
    merged_doc = {**doc, "spec": merge_spec(layers, spec or {})}
    problems = lock_problems(layers, spec or {})
    merged_spec = merged_doc["spec"]
    roles = merged_spec.get("replicas") if isinstance(merged_spec.get("replicas"), Mapping) else {}
    if layers and not merged_spec.get("image") and any(not (r or {}).get("image") for r in (roles or {}).values()):
        names = ", ".join(t.ref for t in layers)
        problems.append(Problem("spec.image", f"required: neither the run nor its templates ({names}) set it"))
    run, own = checked_run(merged_doc)
    return merged_doc, run, problems + [p for p in own if p not in problems]
