"""Decoding limits (source/bounds.py through source/documents.py): what real files need still loads,
what only an attacker writes is a positioned error without content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubedrift.source.bounds import MAX_DEPTH, MAX_FILE_BYTES
from kubedrift.source.documents import DocumentError, parse_json, parse_yaml, read_text

SECRET = "Sup3r-s3cret-in-a-tag"


def nested_yaml(depth: int) -> str:
    """`depth` nested block mappings, two spaces per level, as kubectl writes deep CRD schemas."""
    return "".join(f"{'  ' * i}k{i}:\n" for i in range(depth - 1)) + f"{'  ' * (depth - 1)}k: leaf\n"


def test_deep_but_legal_documents_load_on_the_exact_path() -> None:
    # 2 spaces per level puts the cheap bound above the limit: the exact event walk must accept it.
    doc = parse_yaml(nested_yaml(MAX_DEPTH))[0]
    depth = 0
    while isinstance(doc, dict):
        doc = next(iter(doc.values()))
        depth += 1
    assert depth == MAX_DEPTH and doc == "leaf"


def test_one_level_too_deep_is_an_error_with_its_position() -> None:
    with pytest.raises(DocumentError, match=rf"^nested deeper than {MAX_DEPTH} levels at line {MAX_DEPTH + 1}, "):
        parse_yaml(nested_yaml(MAX_DEPTH + 1) + "  " * MAX_DEPTH + "x: {}\n")


@pytest.mark.parametrize("text", ["[" * 30_000 + "]" * 30_000, "- " * 30_000 + "x", "{a: " * 5_000 + "1" + "}" * 5_000])
def test_attacker_nesting_is_refused_before_libyaml_composes_it(text: str) -> None:
    with pytest.raises(DocumentError, match=rf"nested deeper than {MAX_DEPTH} levels at line 1, column \d+; not read"):
        parse_yaml(text)


def test_ordinary_anchors_and_merge_keys_still_work() -> None:
    text = "base: &base {cpu: 100m, memory: 64Mi}\nweb:\n  <<: *base\n  cpu: 200m\nworker: *base\n"

    doc = parse_yaml(text)[0]

    assert doc["web"] == {"cpu": "200m", "memory": "64Mi"} and doc["worker"] == doc["base"]


def test_alias_bomb_and_recursive_alias_are_refused() -> None:
    lines = ["l0: &l0 [a, a, a, a, a, a, a, a, a, a]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 7)]
    with pytest.raises(DocumentError, match="document 1: excessive aliasing"):
        parse_yaml("\n".join(lines))
    with pytest.raises(DocumentError, match="refers to its own anchor"):
        parse_yaml("a: &a [x, *a]\n")


def test_merge_key_bomb_is_refused_before_construction() -> None:
    # Merging 9 copies level upon level makes PyYAML copy key lists 9^n times while constructing.
    lines = ["m0: &m0 {k: x}"] + [f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 9)}]}}" for i in range(1, 12)]

    with pytest.raises(DocumentError, match="document 1: excessive aliasing"):
        parse_yaml("\n".join(lines))


@pytest.mark.parametrize(
    ("tagged", "message"),
    [
        (f"!!int {SECRET}", "the value does not fit its int tag"),
        (f"!!float {SECRET}", "the value does not fit its float tag"),
        (f"!!bool {SECRET}", "the value does not fit its bool tag"),
        (f"!!binary {SECRET}", "the binary tag has no JSON form"),
        (f"!!set {{{SECRET}}}", "the set tag has no JSON form"),
        (f"!!python/name:os.system {SECRET}", "could not determine a constructor for the tag '...'"),
    ],
)
def test_tags_that_do_not_fit_are_positioned_errors_without_the_value(tagged: str, message: str) -> None:
    text = f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: {tagged}\n"

    with pytest.raises(DocumentError) as info:
        parse_yaml(text)

    assert str(info.value) == f"invalid YAML at line 6, column 13: {message}"
    assert SECRET not in str(info.value)


def test_tags_that_fit_keep_working() -> None:
    assert parse_yaml("a: !!int '7'\nb: !!float '0.5'\nc: !!bool 'true'\nd: !!str 8\n") == [
        {"a": 7, "b": 0.5, "c": True, "d": "8"}
    ]


def test_json_nesting_is_bounded_too() -> None:
    assert parse_json(json.dumps({"a": [[[{"b": 1}]]]})) == {"a": [[[{"b": 1}]]]}
    with pytest.raises(DocumentError, match=f"nested deeper than {MAX_DEPTH} levels"):
        parse_json("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    with pytest.raises(DocumentError, match="invalid JSON: nested too deeply"):
        parse_json("[" * 100_000 + "]" * 100_000)


def test_files_beyond_the_size_limit_are_not_read(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    small = tmp_path / "small.yaml"
    small.write_bytes(b"#" * MAX_FILE_BYTES)

    with pytest.raises(DocumentError, match=rf"^file is {MAX_FILE_BYTES + 1} bytes, more than the limit of "):
        read_text(str(big))
    assert len(read_text(str(small))) == MAX_FILE_BYTES
    assert len(read_text(str(big), max_bytes=None)) == MAX_FILE_BYTES + 1
