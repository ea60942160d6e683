"""Untrusted documents are bounded before they are parsed: YAML bombs, sizes, deep nesting.

Each refusal must come in milliseconds and without memory growth, whatever the
document would have expanded to, and must name the limit it hit.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from condastore_core.bounded import (
    MAX_DEPTH,
    MAX_LOCK_BYTES,
    MAX_SPEC_BYTES,
    DocumentRefused,
    DocumentTooLarge,
    load_json,
)
from condastore_core.errors import CondastoreError
from condastore_core.lock import parse_conda_lock_yaml
from condastore_core.spec import parse_spec

BOMB_SIZES = [1 << 10, 16 << 10, 128 << 10, 1 << 20]


def yaml_bomb(size: int, head: str = "name: bomb\ndependencies: [zstd]\n") -> str:
    """A "billion laughs" of about ``size`` bytes: nine levels, each a list of aliases."""
    levels = 9
    per_level = max(10, (size - len(head)) // (levels * 6))
    lines = [head.rstrip("\n"), 'l0: &l0 ["lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        aliases = ", ".join([f"*l{level - 1}"] * per_level)
        lines.append(f"l{level}: &l{level} [{aliases}]")
    return "\n".join(lines) + "\n"


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def refused_quickly(parse, text) -> CondastoreError:
    """Run ``parse(text)``: it must raise a CondastoreError within 100 ms."""
    start = time.perf_counter()
    with pytest.raises(CondastoreError) as info:
        parse(text)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.1, f"refusing {len(text)} bytes took {elapsed * 1000:.0f} ms"
    return info.value


@pytest.mark.parametrize(
    "parse",
    [parse_spec, parse_conda_lock_yaml, lambda t: parse_spec(t.encode())],
    ids=["spec", "lockfile", "spec-bytes"],
)
def test_yaml_bombs_of_every_size_are_refused_in_milliseconds_with_flat_memory(parse):
    before = rss_bytes()
    for size in BOMB_SIZES:
        error = refused_quickly(parse, yaml_bomb(size))
        assert isinstance(error, DocumentRefused | DocumentTooLarge)
        assert "aliases" in error.message or "limit" in error.message
    assert rss_bytes() - before < 32 << 20


def test_a_small_bomb_names_the_alias_rule():
    error = refused_quickly(parse_spec, yaml_bomb(249))
    assert isinstance(error, DocumentRefused)
    assert "anchors or aliases" in error.message


def test_a_single_anchor_is_refused_too():
    with pytest.raises(DocumentRefused, match="anchors or aliases"):
        parse_spec("name: a\ndependencies: &deps [zstd]\n")


def test_specs_and_lockfiles_over_their_size_cap_are_refused_unread():
    error = refused_quickly(parse_spec, "#" * (MAX_SPEC_BYTES + 1))
    assert isinstance(error, DocumentTooLarge) and "256 KiB" in error.message
    error = refused_quickly(parse_conda_lock_yaml, b"#" * (MAX_LOCK_BYTES + 1))
    assert isinstance(error, DocumentTooLarge) and "8 MiB" in error.message


@pytest.mark.parametrize("opener", ["[", "{a: ", "- "], ids=["lists", "mappings", "blocks"])
def test_deeply_nested_yaml_is_refused_at_the_depth_limit(opener):
    deep = "name: a\ndependencies: [zstd]\nx:\n  " + opener * 500
    error = refused_quickly(parse_spec, deep)
    assert isinstance(error, DocumentRefused)
    assert f"limit of {MAX_DEPTH} levels" in error.message
    # Far deeper, libyaml's own nesting cap may speak first: refused as fast all the same.
    error = refused_quickly(parse_spec, deep + opener * 20_000)
    assert any(w in error.message for w in ("depth", "levels", "KiB"))


def test_nesting_within_the_limit_still_parses():
    spec = parse_spec("name: a\ndependencies: [zstd]\nvariables: {A: '[[[{{{'}\n")
    assert spec.variables == {"A": "[[[{{{"}


def test_deep_json_is_refused_in_milliseconds():
    for raw in (b"[" * (1 << 20), b"[" * 200 + b"]" * 200, b'{"a":' * 50 + b"1" + b"}" * 50):
        error = refused_quickly(lambda r: load_json(r, "the body"), raw)
        assert isinstance(error, DocumentRefused)
        assert f"limit of {MAX_DEPTH} levels" in error.message


def test_json_within_the_limit_and_brackets_in_strings_pass():
    text = json.dumps({"a": [[1, 2], {"b": "[[[[[[" * 100}]})
    assert load_json(text.encode(), "the body")["a"][0] == [1, 2]
