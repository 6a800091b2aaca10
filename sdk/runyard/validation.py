"""Client-side TrainingRun validation with field paths (the CRD's rules, in Python) and multi-document YAML I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from runyard import constants as c
from runyard.api.rules import IMMUTABLE_FIELDS, SPEC_RULES, name_rules
from runyard.api.v1alpha1 import DNS_1035_PATTERN, TrainingRun


@dataclass(frozen=True)
class Problem:
    """One validation problem: a dotted camelCase field path (`spec.replicas.node.replicas`) and a message."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ManifestError(ValueError):
    """A manifest that is not a valid TrainingRun; `problems` says why."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


def load_manifests(source: str | Path) -> list[dict[str, Any]]:
    """Parse every YAML document of a file (a Path, or a str naming an existing file) or of YAML text.

    Empty documents are skipped; invalid YAML or a document that is not a mapping raises ValueError.
    """
    if isinstance(source, Path) or ("\n" not in source and Path(source).is_file()):
        text = Path(source).read_text()
    else:
        text = source
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid YAML: {exc}") from exc
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise ValueError(f"document {i + 1} is a {type(doc).__name__}, not a mapping")
    return docs


def _path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif "[" in part or "(" in part:
            continue  # pydantic's union/validator tags, not fields
        else:
            out += f".{part}" if out else part
    return out


def _describe(error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    if error["type"] not in ("missing", "extra_forbidden") and isinstance(value, str | int | float | bool):
        message += f" (got {value!r})"
    return message


def _name_problems(obj: dict[str, Any]) -> list[Problem]:
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        return [Problem("metadata.name", "Field required: every TrainingRun needs a name")]
    length_rule, pattern_rule = name_rules(c.MAX_RUN_NAME_LENGTH)
    problems = []
    if len(name) > c.MAX_RUN_NAME_LENGTH:
        problems.append(Problem("metadata.name", f"{length_rule['message']} (got {len(name)})"))
    if not re.fullmatch(DNS_1035_PATTERN, name):
        problems.append(Problem("metadata.name", f"{pattern_rule['message']} (got {name!r})"))
    return problems


def parse_run(obj: dict[str, Any]) -> TrainingRun:
    """Validate and parse a manifest; raises ManifestError listing every problem."""
    problems = validate_manifest(obj)
    if problems:
        raise ManifestError(problems)
    return TrainingRun.model_validate(obj)


def validate_manifest(obj: dict[str, Any]) -> list[Problem]:
    """Every problem of a TrainingRun manifest: schema errors, the CRD's cross-field rules, name limits."""
    if not isinstance(obj, dict):
        return [Problem("", "a manifest must be a mapping")]
    problems = _name_problems(obj)
    try:
        run = TrainingRun.model_validate(obj)
    except ValidationError as exc:
        seen: set[tuple[str, str]] = set()
        for error in exc.errors():
            key = (_path(error["loc"]), _describe(error))
            if key not in seen:
                seen.add(key)
                problems.append(Problem(*key))
        return problems
    for rule in SPEC_RULES:
        problems += [Problem(path, rule.message_for(run.spec, path)) for path in rule.check(run.spec)]
    return problems


def validate_update(old: dict[str, Any], new: dict[str, Any]) -> list[Problem]:
    """Problems of `new` as a replacement of `old`: its own problems plus changes to immutable spec fields."""
    problems = validate_manifest(new)
    if problems or validate_manifest(old):
        return problems
    old_spec = TrainingRun.model_validate(old).to_manifest()["spec"]
    new_spec = TrainingRun.model_validate(new).to_manifest()["spec"]
    return [
        Problem(f"spec.{field}", "is immutable: delete and recreate the run to change it")
        for field in IMMUTABLE_FIELDS
        if old_spec.get(field) != new_spec.get(field)
    ]


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (scripts, hostfiles), so rendered YAML stays readable."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def dump_manifests(objs: Iterable[dict[str, Any]]) -> str:
    """Objects as a multi-document YAML stream, keys in builder order."""
    return "".join(
        "---\n" + yaml.dump(obj, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True) for obj in objs
    )
