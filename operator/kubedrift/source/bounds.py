"""Limits on what one file may cost to decode: size, nesting depth, alias expansion, tags.

Repository content is untrusted. libyaml composes nested collections recursively in C (about
30,000 nested `[` overflow the stack of a worker thread: a segfault, not an exception), an alias
bomb expands a few kilobytes into a structure that every later walk expands again, and a large
file costs ~25x its size in memory. Each check here raises `LimitExceeded` with a message that
names the limit and a position, never the content.

Nesting is pre-scanned before libyaml sees the text: a cheap upper bound (block nesting needs
indentation or a `- `/`? `/`: ` indicator per level; flow nesting needs a non-empty `[`/`{` per
level) clears ordinary files; only a file whose bound exceeds the limit is walked exactly, on
libyaml's event stream, which is iterative.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

MAX_FILE_BYTES = 4 * 1024 * 1024
"""One manifest file (the API server itself refuses requests above ~3 MiB)."""
MAX_RENDERED_BYTES = 32 * 1024 * 1024
"""kustomize output of one directory."""
MAX_DEPTH = 100
"""Nesting of collections in one document (deep CRD schemas stay below ~40)."""
MAX_ALIAS_EXPANSION = 100_000
"""Nodes a document may have once its aliases are expanded, beyond its own size."""
MAX_OBJECTS_PER_SCAN = 50_000
"""Objects read from one set of manifests; what comes after is an error, not read."""

_BLOCK_PREFIX = re.compile(r"(?m)^[ \t]*(?:[-?:][ \t]+)*")
_ALIAS = re.compile(r"(?:^|[\s\[{,:-])\*[^\s,\[\]{}]")


class LimitExceeded(ValueError):
    """A decoding limit was hit; the message names it (and a position) but no content."""


def check_size(size: int, limit: int, what: str = "file") -> None:
    if size > limit:
        raise LimitExceeded(f"{what} is {size} bytes, more than the limit of {limit} bytes; not read")


def _depth_bound(text: str) -> int:
    block = max((len(m) for m in _BLOCK_PREFIX.findall(text)), default=0)
    flow = text.count("[") + text.count("{") - text.count("[]") - text.count("{}")
    return 2 * block + 2 + max(flow, 0) + 1


def check_yaml_depth(text: str, limit: int = MAX_DEPTH) -> None:
    """Refuse YAML nested deeper than `limit`, before libyaml's recursive composer runs."""
    if _depth_bound(text) <= limit:
        return
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.CSafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > limit:
                    mark = event.start_mark
                    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
                    raise LimitExceeded(f"nested deeper than {limit} levels{where}; not read")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return  # not valid YAML at all: the real parse reports where, as depth was fine up to there


def check_json_depth(value: Any, text: str, limit: int = MAX_DEPTH) -> None:
    """Refuse decoded JSON nested deeper than `limit` (json.loads itself stops at ~1000 levels)."""
    if _depth_bound(text) <= limit:
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    raise LimitExceeded(f"nested deeper than {limit} levels; not read")
                stack.append((child, depth + 1))


_IN_PROGRESS = -1


def _expanded_size(node: yaml.Node, seen: dict[int, int]) -> int:
    """Nodes under `node` with every alias (merge keys included) counted at each use."""
    known = seen.get(id(node))
    if known == _IN_PROGRESS:
        raise LimitExceeded("a YAML alias refers to its own anchor (a recursive structure); not read")
    if known is not None:
        return known
    if isinstance(node, yaml.ScalarNode):
        return 1
    seen[id(node)] = _IN_PROGRESS
    if isinstance(node, yaml.MappingNode):
        total = 1 + sum(_expanded_size(k, seen) + _expanded_size(v, seen) for k, v in node.value)
    else:
        total = 1 + sum(_expanded_size(child, seen) for child in node.value)
    seen[id(node)] = total
    return total


def has_aliases(text: str) -> bool:
    return "*" in text and _ALIAS.search(text) is not None


def check_aliases(nodes: list[yaml.Node], limit: int = MAX_ALIAS_EXPANSION) -> None:
    """Reject composed documents whose aliases expand beyond `limit` nodes ("excessive aliasing", as
    Kubernetes' decoder says), before PyYAML constructs them: merging `<<: [*a, *a, ...]` level upon
    level copies key lists exponentially during construction."""
    for index, node in enumerate(nodes, start=1):
        if _expanded_size(node, {}) > limit + _distinct_size(node):
            raise LimitExceeded(f"document {index}: excessive aliasing (expands to more than {limit} nodes); "
                                "not read")


def _distinct_size(node: yaml.Node) -> int:
    seen: set[int] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, yaml.MappingNode):
            stack.extend(part for pair in current.value for part in pair)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
    return len(seen)
