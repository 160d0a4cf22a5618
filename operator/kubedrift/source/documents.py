"""Text -> YAML/JSON documents, with error messages that never quote the file's content.

PyYAML's `str(exc)` embeds a snippet of the offending line, which could be a Secret value, so
messages are built from the problem and its position only.
"""

from __future__ import annotations

import json
import re

import yaml

from kubedrift.model import JSON


class DocumentError(ValueError):
    """The text could not be decoded; the message holds a position and the problem, no content."""


class _Loader(yaml.CSafeLoader):
    """CSafeLoader that keeps timestamps as strings, as the Kubernetes API (sigs.k8s.io/yaml) does."""


def _timestamp_as_text(loader: _Loader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return str(loader.construct_scalar(node))


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)

# Quoted fragments in PyYAML problem texts can be copied from the document (tags, anchors,
# escapes). Keep only short ones such as '\t' that explain the problem without revealing content.
_QUOTED = re.compile(r"'[^']{3,}'|\"[^\"]{3,}\"")


def read_text(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
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


def parse_yaml(text: str) -> list[JSON]:
    """All documents of a (multi-document) YAML stream, parsed by libyaml; empty documents are None."""
    try:
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise DocumentError(_yaml_message(exc)) from None
    except RecursionError:
        raise DocumentError("invalid YAML: nested too deeply") from None


def parse_json(text: str) -> JSON:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DocumentError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise DocumentError("invalid JSON: nested too deeply") from None


def looks_like_json(text: str) -> bool:
    """`kubectl get -o json` output starts with `{` or `[`; YAML from kubectl never does."""
    stripped = text.lstrip()
    return stripped[:1] in ("{", "[")
