"""Render a kustomization directory with `kubectl kustomize` or `kustomize build`, safely.

A kustomization comes from an untrusted repository, so before kustomize runs every kustomization
it builds on is read here and each path it names must be a file or directory inside `root` (the
checkout): remote resources and bases (`https://`, `git::`, `github.com/...`, `file://`) and `../`
out of the checkout are refused, so kustomize never makes a request or reads outside the repo.
kustomize then runs with git and HTTP(S) disabled by its environment, without plugins, exec
functions or helm (none of their flags is passed), in a bounded time, its output bounded in size.

Its error text is not published as is: a `secretGenerator` literal with a typo puts the value in
kustomize's message. Every value of the Secret sources (generator literals, env and files, Secret
manifests) is blanked out of the one line that is shown.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kubedrift.model import KubedriftError
from kubedrift.source.bounds import MAX_RENDERED_BYTES
from kubedrift.source.documents import DocumentError, parse_yaml, read_text

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
DEFAULT_TIMEOUT = 60.0
MAX_KUSTOMIZATIONS = 200
_MESSAGE_LIMIT = 400
# Fields that name files or directories, as lists of strings or of objects with a `path`.
_PATH_LISTS = ("resources", "bases", "components", "crds", "configurations", "generators", "transformers",
               "validators", "patchesStrategicMerge")
_PATH_OBJECTS = ("patches", "patchesJson6902", "replacements")
_GENERATORS = ("configMapGenerator", "secretGenerator")
_REFUSED_FIELDS = ("helmCharts", "helmChartInflationGenerator", "helmGlobals")
_KLOG_PREFIX = re.compile(r'^[EWI]\d{4} [\d:.]+\s+\d+ \S+\] "command failed" err=')


class KustomizeError(KubedriftError, RuntimeError):
    """Rendering failed or was refused; the message names the directory and the cause, no values."""


def is_kustomization_dir(directory: str) -> bool:
    return kustomization_file(directory) is not None


def kustomization_file(directory: str) -> str | None:
    for name in KUSTOMIZATION_FILES:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    return None


def renderer_command(directory: str) -> list[str] | None:
    """The command that renders `directory`, preferring kubectl; None when neither tool is on PATH."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        return [kubectl, "kustomize", directory]
    kustomize = shutil.which("kustomize")
    if kustomize:
        return [kustomize, "build", directory]
    return None


@dataclass
class _Plan:
    """What the pre-check learnt: the values to blank out of kustomize's messages."""

    secret_values: set[str] = field(default_factory=set)
    visited: set[str] = field(default_factory=set)


def _inside(path: str, root: str | None) -> bool:
    if root is None:
        return True
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real == top or real.startswith(top + os.sep)


def _named_paths(doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(field, path) for every file or directory a kustomization names."""
    for name in _PATH_LISTS:
        entries = doc.get(name)
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, str) and "\n" not in entry:  # not an inline patch or config
                yield f"{name}[{i}]", entry
            elif isinstance(entry, dict) and isinstance(entry.get("path"), str):
                yield f"{name}[{i}].path", entry["path"]
    for name in _PATH_OBJECTS:
        entries = doc.get(name)
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, dict) and isinstance(entry.get("path"), str):
                yield f"{name}[{i}].path", entry["path"]
    for name in _GENERATORS:
        entries = doc.get(name)
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if not isinstance(entry, dict):
                continue
            for key in ("files", "envs"):
                values = entry.get(key)
                for j, value in enumerate(values if isinstance(values, list) else []):
                    if isinstance(value, str):
                        yield f"{name}[{i}].{key}[{j}]", value.rpartition("=")[2] if key == "files" else value
            if isinstance(entry.get("env"), str):
                yield f"{name}[{i}].env", entry["env"]
    openapi = doc.get("openapi")
    if isinstance(openapi, dict) and isinstance(openapi.get("path"), str):
        yield "openapi.path", openapi["path"]


def _secret_sources(doc: dict[str, Any], directory: str, root: str | None, plan: _Plan) -> None:
    """Every value a secretGenerator brings in: literals, env files and files."""
    entries = doc.get("secretGenerator")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        literals = entry.get("literals")
        for literal in literals if isinstance(literals, list) else []:
            text = str(literal)
            plan.secret_values.add(text)
            plan.secret_values.add(text.partition("=")[2])
        files = [*(entry.get("files") or []), *(entry.get("envs") or [])]
        if isinstance(entry.get("env"), str):
            files.append(entry["env"])
        for name in files:
            path = os.path.join(directory, str(name).rpartition("=")[2])
            if not (_inside(path, root) and os.path.isfile(path)):
                continue
            try:
                content = read_text(path)
            except DocumentError:
                continue
            plan.secret_values.add(content.strip())
            for line in content.splitlines():
                plan.secret_values.add(line.strip())
                plan.secret_values.add(line.partition("=")[2].strip())


def _secret_manifest_values(path: str, plan: _Plan) -> None:
    """Values of Secret objects in a resource file (kustomize may quote objects in its errors)."""
    try:
        docs = parse_yaml(read_text(path))
    except DocumentError as exc:
        raise KustomizeError(f"{os.path.basename(path)}: {exc}") from None
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "Secret":
            for section in ("data", "stringData"):
                values = doc.get(section)
                if isinstance(values, dict):
                    plan.secret_values.update(str(v) for v in values.values() if v is not None)


def _check(directory: str, root: str | None, plan: _Plan, via: str, top: str) -> None:
    real = os.path.realpath(directory)
    if real in plan.visited:
        return
    plan.visited.add(real)
    if len(plan.visited) > MAX_KUSTOMIZATIONS:
        raise KustomizeError(f"builds on more than {MAX_KUSTOMIZATIONS} kustomizations")
    path = kustomization_file(directory)
    if path is None:
        return  # a plain directory of resources: kustomize reads its kustomization or fails
    where = os.path.relpath(path, root or top)
    if not _inside(path, root):
        raise KustomizeError(f"{via}: the kustomization file leads out of the repository")
    try:
        docs = parse_yaml(read_text(path))
    except DocumentError as exc:
        raise KustomizeError(f"{where}: {exc}") from None
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        for name in _REFUSED_FIELDS:
            if name in doc:
                raise KustomizeError(f"{where}: {name} is not supported (helm charts are never inflated)")
        _secret_sources(doc, directory, root, plan)
        for field_name, target in _named_paths(doc):
            full = os.path.normpath(os.path.join(directory, target))
            local = not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target) and os.path.lexists(full)
            if not local:
                raise KustomizeError(f"{where}: {field_name} {target[:200]!r} is not a file or directory in the "
                                     "repository (remote resources are never fetched)")
            if not _inside(full, root):
                raise KustomizeError(f"{where}: {field_name} {target[:200]!r} leads out of the repository")
            if os.path.isdir(full):
                _check(full, root, plan, f"{where}: {field_name}", top)
            elif full.endswith((".yaml", ".yml", ".json")):
                _secret_manifest_values(full, plan)


def _environment(home: str) -> dict[str, str]:
    """No git remote, no network (any HTTP(S) request goes to a closed local port), no user config."""
    dead_proxy = "http://127.0.0.1:9"
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "LC_ALL": "C",
        "GIT_ALLOW_PROTOCOL": "none",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "HTTP_PROXY": dead_proxy,
        "HTTPS_PROXY": dead_proxy,
        "http_proxy": dead_proxy,
        "https_proxy": dead_proxy,
        "NO_PROXY": "",
        "KUBECONFIG": os.devnull,
    }


def _blank(text: str, values: set[str]) -> str:
    for value in sorted((v for v in values if v), key=len, reverse=True):
        if len(value) >= 3:
            text = text.replace(value, "***")
        else:
            text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", "***", text)
    return text


def _message(stderr: str, directory: str, plan: _Plan) -> str:
    """kustomize's error on one line (klog may spread it over several), Secret values blanked out."""
    lines = [_KLOG_PREFIX.sub("", line.strip()) for line in stderr.splitlines() if line.strip()]
    text = " ".join(line.strip('"<>').strip() for line in lines if line.strip('"<>').strip())
    text = _blank(text.replace(directory.rstrip("/") + "/", ""), plan.secret_values) or "no error output"
    if len(text) > _MESSAGE_LIMIT:
        text = text[:_MESSAGE_LIMIT].rstrip() + " ..."
    return text


def render_kustomization(directory: str, *, root: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> str:
    """The rendered multi-document YAML of `directory`; every path it names must stay inside `root`."""
    plan = _Plan()
    try:
        _check(directory, root, plan, "kustomization", directory)
    except KustomizeError as exc:
        raise KustomizeError(f"kustomize rendering of {directory} refused: {exc}") from None
    command = renderer_command(directory)
    if command is None:
        raise KustomizeError(f"kustomize rendering of {directory} needs kubectl or kustomize on PATH")
    with tempfile.TemporaryDirectory(prefix="kubedrift-kustomize-") as home:
        try:
            returncode, stdout, stderr = _run_bounded(command, _environment(home), timeout, MAX_RENDERED_BYTES)
        except subprocess.TimeoutExpired:
            raise KustomizeError(f"kustomize rendering of {directory} timed out after {timeout:g}s") from None
        except OSError as exc:
            raise KustomizeError(
                f"kustomize rendering of {directory} could not start {command[0]}: {exc.strerror}") from None
    if stdout is None:
        raise KustomizeError(f"kustomize rendering of {directory} gave more than {MAX_RENDERED_BYTES} bytes; "
                             "not read")
    if returncode != 0:
        raise KustomizeError(f"kustomize rendering of {directory} failed: {_message(stderr, directory, plan)}")
    return stdout


def _run_bounded(command: list[str], env: dict[str, str], timeout: float, cap: int) -> tuple[int, str | None, str]:
    """Run `command`; stdout is None when it went beyond `cap` bytes (the process is then killed)."""
    deadline = time.monotonic() + timeout
    with subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env) as process:
        assert process.stdout is not None and process.stderr is not None
        chunks: dict[int, list[bytes]] = {process.stdout.fileno(): [], process.stderr.fileno(): []}
        sizes = dict.fromkeys(chunks, 0)
        open_fds = set(chunks)
        try:
            while open_fds:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise subprocess.TimeoutExpired(command, timeout)
                ready, _, _ = select.select(list(open_fds), [], [], left)
                for fd in ready:
                    data = os.read(fd, 1 << 16)
                    if not data:
                        open_fds.discard(fd)
                        continue
                    sizes[fd] += len(data)
                    if sizes[fd] > cap:
                        process.kill()
                        process.wait()
                        return -1, None, ""
                    chunks[fd].append(data)
            returncode = process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except BaseException:
            process.kill()
            raise
        out = b"".join(chunks[process.stdout.fileno()]).decode("utf-8", errors="replace")
        err = b"".join(chunks[process.stderr.fileno()]).decode("utf-8", errors="replace")
        return returncode, out, err
