"""Client-side TrainingRun validation with field paths (the CRD's rules, in Python) and multi-document YAML I/O."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from runyard import constants as c

# Re-exported: advisories read plain dicts, so the fast `runyard submit` imports them without the models.
from runyard.advice import advisories as advisories
from runyard.api.rules import IMMUTABLE_FIELDS, name_rules, spec_rules
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


# Bounds on what `load_manifests` accepts: a TrainingRun is stored in etcd (1.5 MiB per object), and YAML aliases
# can make a small file expand to billions of values (the "billion laughs").
MAX_MANIFEST_BYTES = 8 * 2**20
MAX_MANIFEST_VALUES = 1_000_000
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
DNS_1123_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
MAX_DNS_LABEL_LENGTH = 63


def load_manifests(source: str | Path) -> list[dict[str, Any]]:
    """Parse every YAML document of a file (a Path, or a str naming a file) or of YAML text.

    A str is a file when it names an existing one, or when it looks like a path (one line, no `: `, ending in
    .yaml/.yml/.json or containing a path separator): a missing path is an error, never parsed as YAML text.
    Empty documents are skipped. Every problem (missing or unreadable file, not UTF-8, invalid YAML, a document
    that is not a mapping, too large) raises ValueError with a one-line reason that does not repeat the source.
    """
    text = _read_manifest_file(Path(source).expanduser()) if is_manifest_path(source) else str(source)
    if len(text) > MAX_MANIFEST_BYTES:
        raise ValueError(f"too large: {len(text)} characters, at most {MAX_MANIFEST_BYTES}")
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ValueError(f"invalid YAML: {yaml_error_message(exc)}") from exc
    except RecursionError as exc:
        raise ValueError("invalid YAML: nested too deeply") from exc
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise ValueError(f"document {i + 1} is a {_yaml_type(doc)}, not a mapping")
        _count_values(doc, {}, set())
    return docs


def is_manifest_path(source: str | Path) -> bool:
    """Whether `load_manifests` reads `source` as a file (see there) rather than as YAML text."""
    if isinstance(source, Path):
        return True
    if not isinstance(source, str):
        raise TypeError(f"a manifest source is a path or YAML text, not {type(source).__name__}")
    if "\n" in source or not source.strip():
        return False
    try:
        if Path(source).expanduser().exists():
            return True
    except (OSError, ValueError):  # a name too long for the file system, or with a NUL byte: not a path
        return False
    text = source.strip()
    if text.startswith(("{", "[")) or ": " in text:
        return False
    return text.endswith(MANIFEST_SUFFIXES) or "/" in text or os.sep in text


def _read_manifest_file(path: Path) -> str:
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError as exc:
        raise ValueError("no such file") from exc
    except IsADirectoryError as exc:
        raise ValueError("is a directory, not a file") from exc
    except OSError as exc:
        raise ValueError(f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_MANIFEST_BYTES:
        raise ValueError(f"too large: more than {MAX_MANIFEST_BYTES} bytes")
    return decode_text(data)


def decode_text(data: bytes) -> str:
    """UTF-8 text (a BOM is dropped), or ValueError saying where the first invalid byte is."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start}") from exc


def yaml_error_message(exc: yaml.YAMLError) -> str:
    """A PyYAML error on one line: where (line and column, 1-based) and what."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        context = f" ({exc.context})" if exc.context and exc.problem else ""
        return f"{where}{exc.problem or exc.context}{context}"
    if isinstance(exc, yaml.reader.ReaderError):
        return f"offset {exc.position}: unacceptable character #x{exc.character:04x}: {exc.reason}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _yaml_type(value: object) -> str:
    names = {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}
    return names.get(type(value), type(value).__name__)


def _count_values(node: object, counted: dict[int, int], open_: set[int]) -> int:
    """Values in `node` once YAML aliases are expanded; ValueError beyond MAX_MANIFEST_VALUES or for a cycle."""
    if not isinstance(node, dict | list):
        return 1
    key = id(node)
    if key in counted:
        return counted[key]
    if key in open_:
        raise ValueError("a YAML alias refers to the node that contains it (a recursive structure)")
    open_.add(key)
    total = 1
    for child in node.values() if isinstance(node, dict) else node:
        total += _count_values(child, counted, open_)
        if total > MAX_MANIFEST_VALUES:
            raise ValueError(f"expands to more than {MAX_MANIFEST_VALUES} values (YAML aliases?)")
    open_.discard(key)
    counted[key] = total
    return total


def run_name_problem(name: object) -> str | None:
    """Why `name` cannot name a TrainingRun to look up (None when it can): it would end up in an API URL."""
    if not isinstance(name, str) or not name:
        return "a run name must not be empty"
    if len(name) > MAX_DNS_LABEL_LENGTH or not re.fullmatch(DNS_1035_PATTERN, name):
        return (
            f"invalid run name {name!r}: a DNS-1035 label (lower-case letters, digits and '-', starting with "
            f"a letter, at most {MAX_DNS_LABEL_LENGTH} characters)"
        )
    return None


def namespace_problem(namespace: object) -> str | None:
    """Why `namespace` is not a valid Kubernetes namespace name (None when it is)."""
    if not isinstance(namespace, str) or not namespace:
        return "a namespace must not be empty"
    if len(namespace) > MAX_DNS_LABEL_LENGTH or not re.fullmatch(DNS_1123_LABEL_PATTERN, namespace):
        return (
            f"invalid namespace {namespace!r}: a DNS-1123 label (lower-case letters, digits and '-', starting "
            f"and ending with a letter or digit, at most {MAX_DNS_LABEL_LENGTH} characters)"
        )
    return None


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
    if metadata is not None and not isinstance(metadata, dict):
        return []  # the schema reports `metadata` itself
    name = (metadata or {}).get("name")
    if name is None or name == "":
        return [Problem("metadata.name", "Field required: every TrainingRun needs a name")]
    if not isinstance(name, str):
        return []  # the schema reports its type
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
    return checked_run(obj)[1]


def checked_run(obj: dict[str, Any]) -> tuple[TrainingRun | None, list[Problem]]:
    """The parsed run (None when the schema refuses it) and every problem, from one parse."""
    if not isinstance(obj, dict):
        return None, [Problem("", "a manifest must be a mapping")]
    problems = _name_problems(obj)
    try:
        run = TrainingRun.model_validate(obj)
    except ValidationError as exc:
        return None, problems + _schema_problems(exc)
    for rule in spec_rules():
        problems += [Problem(path, rule.message_for(run.spec, path)) for path in rule.check(run.spec)]
    return run, problems


def _schema_problems(exc: ValidationError) -> list[Problem]:
    problems: list[Problem] = []
    for error in exc.errors():
        problem = Problem(_path(error["loc"]), _describe(error))
        if problem not in problems:
            problems.append(problem)
    # Another kind of object (a ConfigMap, a PyTorchJob): its other fields are not worth a problem each.
    wrong_kind = [p for p in problems if p.path in ("apiVersion", "kind")]
    return wrong_kind or problems


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
