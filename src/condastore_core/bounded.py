"""Bounds checked before an untrusted document is parsed: size, nesting depth, YAML aliases.

Every spec, lockfile and API body comes from someone who may be careless or
hostile. A kilobyte of YAML with nested anchors (the "billion laughs") expands
to gigabytes when its aliases are followed, and deeply nested JSON or YAML
exhausts the parser's stack. So documents are measured first, cheaply and
without building anything: the byte size against a cap, then (for YAML) the
parser's event stream, which is refused at the first anchor or alias and when
nesting or the node count passes a cap. Only a document that passed is parsed
for real. Each refusal names the limit it hit.

Anchors are refused outright rather than expanded with a budget: nothing
condastore reads (``environment.yaml``, ``conda-lock.yml``) needs them, and a
refusal costs the same at any size.
"""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import yaml

from condastore_core.errors import CondastoreError

#: The largest ``environment.yaml`` accepted: real specs are a few hundred bytes.
MAX_SPEC_BYTES = 256 * 1024
#: The largest ``conda-lock.yml`` accepted: a lock of a thousand packages on three platforms
#: is about 2 MiB.
MAX_LOCK_BYTES = 8 * 1024 * 1024
#: The largest OCI manifest or index accepted, pushed or fetched (distribution's own cap).
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
#: The deepest nesting of mappings and lists accepted in YAML and JSON documents.
MAX_DEPTH = 32
#: The most YAML nodes (scalars, lists, mappings) one document may hold.
MAX_NODES = 500_000

#: The C parser when PyYAML has libyaml: it walks a megabyte in milliseconds.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _DEPTH_STEP)


class DocumentTooLarge(CondastoreError):
    """A document larger than the cap for its kind; refused before it is read."""

    code = "TOO_LARGE"


class DocumentRefused(CondastoreError):
    """A document whose shape is refused before parsing (aliases, depth, node count)."""

    code = "DOCUMENT_REFUSED"


def check_size(data: str | bytes, limit: int, what: str) -> None:
    """Refuse ``data`` when it is longer than ``limit`` bytes (characters for text)."""
    if len(data) > limit:
        raise DocumentTooLarge(
            f"{what} is larger than the limit of {_size(limit)}; it was not read",
            detail={"limit": limit},
        )


def check_yaml(
    text: str, what: str, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES
) -> None:
    """Refuse YAML with anchors or aliases, nesting past ``max_depth`` or over ``max_nodes``.

    Reads only the parser's events, stopping at the first offence, so a bomb
    costs what its first few lines cost. Syntax errors pass through as
    ``yaml.YAMLError`` for the caller to report with its line.
    """
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise DocumentRefused(
                f"{what} uses YAML anchors or aliases (& and *), which are not accepted; "
                "write the values out",
                detail={"limit": "no YAML aliases"},
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > max_depth:
                raise _too_deep(what, max_depth)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        if isinstance(event, yaml.NodeEvent):
            nodes += 1
            if nodes > max_nodes:
                raise DocumentRefused(
                    f"{what} has more than the limit of {max_nodes} YAML nodes",
                    detail={"limit": max_nodes},
                )


def load_json(raw: bytes, what: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text of bounded size, refusing nesting deeper than ``max_depth``.

    The C decoder itself stops at Python's recursion limit; past that, the depth
    is measured on the text: strings blanked (brackets inside them do not count),
    the rest reduced to its brackets, whose running sum is the depth. All of it
    runs in C loops, so a megabyte of ``[`` is refused in milliseconds. Syntax
    errors pass through as ``ValueError``.
    """
    try:
        data = json.loads(raw)
    except RecursionError:
        raise _too_deep(what, max_depth) from None
    _check_json_depth(raw, what, max_depth)
    return data


def _too_deep(what: str, max_depth: int) -> DocumentRefused:
    return DocumentRefused(
        f"{what} nests deeper than the limit of {max_depth} levels", detail={"limit": max_depth}
    )


def _check_json_depth(raw: bytes, what: str, max_depth: int) -> None:
    # Only for text the decoder accepted: its strings are well formed, so the
    # string pattern matches each in one linear pass.
    brackets = _JSON_STRING.sub(b'""', raw).translate(None, _NOT_BRACKETS)
    if len(brackets) <= max_depth:
        return
    deepest = max(itertools.accumulate(map(_DEPTH_STEP.__getitem__, brackets)))
    if deepest > max_depth:
        raise _too_deep(what, max_depth)


def yaml_loader() -> type[yaml.SafeLoader]:
    """The safe loader parsing documents that passed :func:`check_yaml`."""
    return _Loader  # type: ignore[no-any-return]


def _size(limit: int) -> str:
    if limit % (1 << 20) == 0:
        return f"{limit >> 20} MiB"
    if limit % 1024 == 0:
        return f"{limit >> 10} KiB"
    return f"{limit} bytes"
