"""`$(VAR)` expansion exactly as the kubelet applies it to env values, command and args (for local runs)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

# k8s.io/kubernetes third_party/forked/golang/expansion: `$(NAME)` is replaced when NAME is known and kept verbatim
# when not, `$$` is an escaped `$`, and any other `$` is literal.
_OPERATOR = "$"


def _read_reference(text: str) -> tuple[str, bool, int]:
    """(what was read, whether it names a variable, characters consumed) for the text after a `$`."""
    if text[0] == _OPERATOR:
        return _OPERATOR, False, 1
    if text[0] == "(":
        end = text.find(")", 1)
        if end != -1:
            return text[1:end], True, end + 1
        return "$(", False, 1
    return _OPERATOR + text[0], False, 1


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """`text` with every `$(NAME)` that `lookup` knows replaced; unknown references stay as written."""
    out: list[str] = []
    checkpoint = cursor = 0
    while cursor < len(text):
        if text[cursor] == _OPERATOR and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            read, is_name, advance = _read_reference(text[cursor + 1 :])
            if is_name:
                value = lookup(read)
                out.append(value if value is not None else f"$({read})")
            else:
                out.append(read)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + text[checkpoint:]


def expand_env(entries: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Literal env entries in order, each value expanded from the entries before it (as the kubelet does).

    Entries without a literal `value` (valueFrom) are skipped: they do not exist outside the cluster.
    """
    env: dict[str, str] = {}
    for entry in entries:
        if "value" in entry:
            env[str(entry["name"])] = expand(str(entry["value"]), env.get)
    return env


def expand_argv(argv: Iterable[str], env: Mapping[str, str]) -> list[str]:
    """Command and args expanded from the container's final env."""
    return [expand(arg, env.get) for arg in argv]
