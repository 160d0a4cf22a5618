"""Text -> YAML/JSON documents, with error messages that never quote the file's content.

PyYAML's `str(exc)` embeds a snippet of the offending line, which could be a Secret value, so
messages are built from the problem and its position only.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import yaml

from kubedrift.model import JSON, DecimalFloat, KubedriftError
from kubedrift.source.bounds import (
    MAX_FILE_BYTES,
    LimitExceeded,
    check_aliases,
    check_json_depth,
    check_size,
    check_yaml_depth,
    has_aliases,
)


class DocumentError(KubedriftError, ValueError):
    """The text could not be decoded; the message holds a position and the problem, no content."""


class _Loader(yaml.CSafeLoader):
    """CSafeLoader that keeps timestamps as strings, as the Kubernetes API (sigs.k8s.io/yaml) does."""


def _timestamp_as_text(loader: _Loader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return str(loader.construct_scalar(node))


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)

_DECIMAL_TEXT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def _float_keeping_text(loader: _Loader, node: yaml.Node) -> float:
    """`0.1` as a float that remembers its text: quantities are read from the text (model.DecimalFloat)."""
    assert isinstance(node, yaml.ScalarNode)
    text = str(loader.construct_scalar(node)).replace("_", "")
    if _DECIMAL_TEXT.fullmatch(text):
        return DecimalFloat(text)
    return float(loader.construct_yaml_float(node))  # .inf, .nan, sexagesimal


_Loader.add_constructor("tag:yaml.org,2002:float", _float_keeping_text)
for _dumper in (yaml.SafeDumper, yaml.CSafeDumper):
    _dumper.add_representer(DecimalFloat, _dumper.represent_float)


# ----- limits (source/bounds.py): only JSON-shaped values, every failure with a position -----

def _not_json(loader: _Loader, node: yaml.Node) -> Any:
    raise yaml.constructor.ConstructorError(None, None, f"the {node.tag.rsplit(':', 1)[-1]} tag has no JSON form",
                                            node.start_mark)


for _tag in ("set", "omap", "pairs", "binary"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _not_json)


class _LocatingLoader(_Loader):
    """Slow path after a failed load: finds the node whose tag could not convert its value."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except Exception:
            tag = str(node.tag).rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                None, None, f"the value does not fit its {tag} tag", node.start_mark) from None


def _locate_failure(text: str) -> str:
    try:
        list(yaml.load_all(text, Loader=_LocatingLoader))
    except yaml.YAMLError as exc:
        return _yaml_message(exc)
    except Exception as exc:  # any failure becomes an error without content
        return f"invalid YAML: {type(exc).__name__}"
    return "invalid YAML"

# Quoted fragments in PyYAML problem texts can be copied from the document (tags, anchors,
# escapes). Keep only short ones such as '\t' that explain the problem without revealing content.
_QUOTED = re.compile(r"'[^']{3,}'|\"[^\"]{3,}\"")


def read_text(path: str, max_bytes: int | None = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of `path`; a file above `max_bytes` is an error (None: no limit)."""
    try:
        with open(path, "rb") as fh:
            if max_bytes is not None:
                check_size(os.fstat(fh.fileno()).st_size, max_bytes)
            raw = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
        if max_bytes is not None:
            check_size(len(raw), max_bytes)  # grew while read, or not a regular file
    except LimitExceeded as exc:
        raise DocumentError(str(exc)) from None
    except OSError as exc:
        raise DocumentError(f"cannot read: {exc.strerror or type(exc).__name__}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"not UTF-8 text (invalid byte at offset {exc.start})") from None


def _safe(text: str | None) -> str:
    return _QUOTED.sub("'...'", text or "").strip()


def _at(mark: yaml.Mark | None) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _yaml_message(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = _safe(exc.problem) or "malformed document"
        message = f"invalid YAML{_at(mark)}: {problem}"
        context = _safe(exc.context)
        if context:
            message += f" ({context}{_at(exc.context_mark) if exc.context_mark is not mark else ''})"
        return message
    return f"invalid YAML: {type(exc).__name__}"


def _load_with_aliases(text: str) -> list[JSON]:
    """Compose first, check how far aliases expand, then construct (from the same parse)."""
    loader = _Loader(text)
    try:
        nodes: list[yaml.Node] = []
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                nodes.append(node)
        check_aliases(nodes)
        return [loader.construct_document(node) for node in nodes]
    finally:
        loader.dispose()


def parse_yaml(text: str) -> list[JSON]:
    """All documents of a (multi-document) YAML stream, parsed by libyaml; empty documents are None."""
    try:
        check_yaml_depth(text)
        if has_aliases(text):
            return _load_with_aliases(text)
        return list(yaml.load_all(text, Loader=_Loader))
    except LimitExceeded as exc:
        raise DocumentError(str(exc)) from None
    except yaml.YAMLError as exc:
        raise DocumentError(_yaml_message(exc)) from None
    except RecursionError:
        raise DocumentError("invalid YAML: nested too deeply") from None
    except Exception:  # a tag whose value does not convert (`!!int x`): find where
        raise DocumentError(_locate_failure(text)) from None


def parse_json(text: str) -> JSON:
    try:
        value = json.loads(text, parse_float=DecimalFloat)
        check_json_depth(value, text)
        return value
    except LimitExceeded as exc:
        raise DocumentError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise DocumentError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise DocumentError("invalid JSON: nested too deeply") from None


def looks_like_json(text: str) -> bool:
    """`kubectl get -o json` output starts with `{` or `[`; YAML from kubectl never does."""
    stripped = text.lstrip()
    return stripped[:1] in ("{", "[")


def read_documents(path: str) -> list[JSON]:
    """The documents of a manifest file: one JSON value for `*.json`, else every YAML document.

    Raises DocumentError naming what is wrong (never the file's content)."""
    text = read_text(path)
    return [parse_json(text)] if path.endswith(".json") else parse_yaml(text)
