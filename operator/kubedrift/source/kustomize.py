"""Render a kustomization directory with `kubectl kustomize` or `kustomize build`."""

from __future__ import annotations

import os
import shutil
import subprocess

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
DEFAULT_TIMEOUT = 60.0
_STDERR_LIMIT = 2000


class KustomizeError(RuntimeError):
    """Rendering failed; the message names the directory and the cause."""


def is_kustomization_dir(directory: str) -> bool:
    return any(os.path.isfile(os.path.join(directory, name)) for name in KUSTOMIZATION_FILES)


def renderer_command(directory: str) -> list[str] | None:
    """The command that renders `directory`, preferring kubectl; None when neither tool is on PATH."""
    kubectl = shutil.which("kubectl")
    if kubectl:
        return [kubectl, "kustomize", directory]
    kustomize = shutil.which("kustomize")
    if kustomize:
        return [kustomize, "build", directory]
    return None


def _trim(stderr: str) -> str:
    text = stderr.strip()
    if len(text) > _STDERR_LIMIT:
        text = text[:_STDERR_LIMIT].rstrip() + " ..."
    return text or "no error output"


def render_kustomization(directory: str, *, timeout: float = DEFAULT_TIMEOUT) -> str:
    """The rendered multi-document YAML of `directory`."""
    command = renderer_command(directory)
    if command is None:
        raise KustomizeError(f"kustomize rendering of {directory} needs kubectl or kustomize on PATH")
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise KustomizeError(f"kustomize rendering of {directory} timed out after {timeout:g}s") from None
    except OSError as exc:
        raise KustomizeError(f"kustomize rendering of {directory} could not start {command[0]}: {exc}") from None
    if done.returncode != 0:
        raise KustomizeError(f"kustomize rendering of {directory} failed: {_trim(done.stderr)}")
    return done.stdout
