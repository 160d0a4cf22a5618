"""Run a process of an OCI image archive the way a container runtime would, with no runtime installed.

buildah builds the image, but nothing here runs containers (no podman, no registry). What a
kubelet does for the operator's pod is done with util-linux and coreutils instead:

- the archive's layers are unpacked in order into a root filesystem (whiteouts applied),
- the process runs in its own mount and PID namespaces (`unshare`), chrooted into that root,
  which is mounted read-only (`readOnlyRootFilesystem`), with tmpfs emptyDirs, read-only bind
  mounts (a service-account token, a ConfigMap), /proc, /dev and the host's /etc/hosts,
- as the user the caller names (`runAsUser`), with exactly the environment it is given on top of
  the image's own `Env`, and the image's `Entrypoint` unless a command is given.

The network namespace is the host's, so a server on 127.0.0.1 is reachable from inside, as from a
pod's sidecar. Needs root (CI and the developers' machines run as root).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"


@dataclass
class ImageConfig:
    """The parts of an OCI image configuration a runtime uses to start a process."""

    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]
    user: str
    workdir: str
    labels: dict[str, str]
    exposed_ports: list[str]
    volumes: list[str]
    ref_name: str
    layer_sizes: list[int] = field(default_factory=list)


def _blob(archive: tarfile.TarFile, digest: str) -> IO[bytes]:
    algorithm, _, value = digest.partition(":")
    member = archive.extractfile(f"blobs/{algorithm}/{value}")
    assert member is not None, f"{digest} is not a file in the archive"
    return member


def read_config(archive_path: Path) -> tuple[ImageConfig, list[str]]:
    """The image configuration and its layer digests, from an OCI layout archive."""
    with tarfile.open(archive_path) as archive:
        index = json.load(_blob_or_file(archive, "index.json"))
        descriptor = index["manifests"][0]
        manifest = json.load(_blob(archive, descriptor["digest"]))
        config = json.load(_blob(archive, manifest["config"]["digest"]))
    settings: dict[str, Any] = config.get("config", {})
    env = dict(item.split("=", 1) for item in settings.get("Env", []))
    return ImageConfig(
        entrypoint=list(settings.get("Entrypoint") or []),
        cmd=list(settings.get("Cmd") or []),
        env=env,
        user=str(settings.get("User", "")),
        workdir=str(settings.get("WorkingDir") or "/"),
        labels=dict(settings.get("Labels") or {}),
        exposed_ports=sorted(settings.get("ExposedPorts") or {}),
        volumes=sorted(settings.get("Volumes") or {}),
        ref_name=str(descriptor.get("annotations", {}).get("org.opencontainers.image.ref.name", "")),
        layer_sizes=[int(layer["size"]) for layer in manifest["layers"]],
    ), [layer["digest"] for layer in manifest["layers"]]


def _blob_or_file(archive: tarfile.TarFile, name: str) -> IO[bytes]:
    member = archive.extractfile(name)
    assert member is not None, f"{name} is missing from the archive"
    return member


def _apply_whiteouts(root: Path, names: Sequence[str]) -> None:
    for name in names:
        path = Path(name.lstrip("./").lstrip("/"))
        if path.name == _OPAQUE:
            directory = root / path.parent
            if directory.is_dir():
                for child in directory.iterdir():
                    _remove(child)
        elif path.name.startswith(_WHITEOUT):
            _remove(root / path.parent / path.name[len(_WHITEOUT):])


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def unpack(archive_path: Path, root: Path) -> ImageConfig:
    """Unpack the image's layers into `root` (lower layers first, whiteouts honoured)."""
    config, layers = read_config(archive_path)
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive_path) as archive:
        for digest in layers:
            with tarfile.open(fileobj=_blob(archive, digest), mode="r:*") as layer:
                members = layer.getmembers()
                _apply_whiteouts(root, [m.name for m in members if Path(m.name).name.startswith(_WHITEOUT)])
                content = [m for m in members if not Path(m.name).name.startswith(_WHITEOUT)]
                layer.extractall(root, members=content, numeric_owner=True, filter="fully_trusted")
    return config


def resolve_in(root: Path, target: str) -> Path:
    """`target` as seen inside `root`: symlinks (absolute ones too) resolve within root, never outside it."""
    resolved = root
    parts = [p for p in Path(target).parts if p not in ("/", "")]
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            resolved = resolved.parent if resolved != root else root
            continue
        candidate = resolved / part
        if candidate.is_symlink():
            hops += 1
            assert hops < 40, f"symlink loop resolving {target} in {root}"
            link = os.readlink(candidate)
            parts = [p for p in Path(link).parts if p not in ("/", "")] + parts
            if link.startswith("/"):
                resolved = root
            continue
        resolved = candidate
    return resolved


def _mount_point(root: Path, target: str, *, directory: bool) -> Path:
    """Create the mount point for `target` inside root (as a runtime does) and return its host path."""
    path = resolve_in(root, target)
    if directory:
        path.mkdir(parents=True, exist_ok=True)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    return path


@dataclass
class Container:
    """An unpacked image ready to run processes; see the module docstring."""

    root: Path
    config: ImageConfig

    @classmethod
    def from_archive(cls, archive_path: Path, root: Path) -> Container:
        return cls(root, unpack(archive_path, root))

    def command(
        self,
        args: Sequence[str] | None = None,
        *,
        command: Sequence[str] | None = None,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
        tmpfs: Sequence[str] = ("/tmp",),
        binds: Mapping[str, Path] | None = None,
        workdir: str | None = None,
    ) -> list[str]:
        """The host command line that runs the process (Kubernetes' command/args semantics)."""
        entry = list(command) if command is not None else list(self.config.entrypoint)
        argv = entry + (list(args) if args is not None else ([] if command is not None else self.config.cmd))
        assert argv, "the image names no entrypoint and no command was given"
        uid_gid = user or self.config.user or "0:0"
        if ":" not in uid_gid:
            uid_gid = f"{uid_gid}:{uid_gid}"
        environment = {**self.config.env, **(env or {})}
        environment.setdefault("HOME", self._home(uid_gid.split(":")[0]))  # as container runtimes set it
        root = shlex.quote(str(self.root))
        lines = ["set -e", "mount --make-rprivate /", f"mount --bind {root} {root}"]
        for target, source, directory in [("/proc", None, True), ("/dev", Path("/dev"), True),
                                          *[(f"/etc/{name}", Path("/etc", name), False)
                                            for name in ("hosts", "resolv.conf") if Path("/etc", name).exists()]]:
            point = shlex.quote(str(_mount_point(self.root, target, directory=directory)))
            if source is None:
                lines.append(f"mount -t proc proc {point}")
            elif directory:
                lines.append(f"mount --rbind {source} {point}")
            else:
                lines.append(f"mount --bind -o ro {source} {point}")
        for target in tmpfs:  # emptyDir: writable by anyone, like the kubelet makes them
            point = shlex.quote(str(_mount_point(self.root, target, directory=True)))
            lines.append(f"mount -t tmpfs -o mode=1777,size=256m tmpfs {point}")
        for target, source in (binds or {}).items():
            point = shlex.quote(str(_mount_point(self.root, target, directory=source.is_dir())))
            lines += [f"mount --bind {shlex.quote(str(source))} {point}", f"mount -o remount,bind,ro {point}"]
        lines.append(f"mount -o remount,bind,ro {root}")
        env_args = " ".join(shlex.quote(f"{k}={v}") for k, v in environment.items())
        lines.append(
            f"exec chroot --userspec={shlex.quote(uid_gid)} {root} /usr/bin/env -i {env_args} "
            f"/bin/sh -c 'cd \"$0\" && exec \"$@\"' {shlex.quote(workdir or self.config.workdir)} "
            + " ".join(shlex.quote(a) for a in argv)
        )
        return ["unshare", "--mount", "--pid", "--fork", "--kill-child", "sh", "-c", "\n".join(lines)]

    def _home(self, uid: str) -> str:
        passwd = resolve_in(self.root, "/etc/passwd")
        for line in passwd.read_text().splitlines() if passwd.exists() else []:
            fields = line.split(":")
            if len(fields) > 5 and uid in (fields[0], fields[2]):
                return fields[5]
        return "/"

    def run(self, args: Sequence[str] | None = None, *, timeout: float = 120, **options: Any) -> \
            subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(args, **options), capture_output=True, text=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)

    def start(self, args: Sequence[str] | None = None, *, log: IO[bytes], **options: Any) -> subprocess.Popen[bytes]:
        """Start in the background, in a session of its own so that `stop` reaches every process."""
        return subprocess.Popen(self.command(args, **options), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def stop(process: subprocess.Popen[bytes], grace: float = 20) -> int:
    """SIGTERM to the container's processes (as a kubelet does), SIGKILL after `grace` seconds."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            return process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    return process.wait()
