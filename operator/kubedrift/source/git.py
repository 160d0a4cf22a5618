"""Git checkouts for policies: one cached bare clone per repoURL, one worktree per commit.

Layout under the cache dir, for `key = sha256(repoURL)`:
    <key>.lock            flock taken while fetching/checking out (serializes processes too)
    <key>/repo.git        bare repository, fetched on every checkout
    <key>/trees/<sha>     detached worktree of one commit, shared by every policy at that commit
    <key>/trees/<sha>.ready  written once the worktree is complete; its mtime marks the last use

Credentials never reach disk: HTTPS ones reach git through a credential helper that reads them
from the environment of that one git process; SSH keys live in a 0600 temp file for the call.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import git

DEFAULT_TIMEOUT = 60.0
DEFAULT_KEEP_TREES = 8
ALLOWED_PROTOCOLS = "file:git:http:https:ssh"

_HEX = re.compile(r"[0-9a-f]{4,40}")
_REVISION = re.compile(r"[A-Za-z0-9._/@+-]+")
# Any user info of an HTTP(S) URL (a user name may be a token); the password part of others.
_HTTP_USERINFO = re.compile(r"(?i)\b(https?://)[^/\s@]*@")
_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^/\s@]*@")
_ENV_USER = "KUBEDRIFT_GIT_USERNAME"
_ENV_PASSWORD = "KUBEDRIFT_GIT_PASSWORD"
# A credential helper that answers from the environment of the git process it runs under.
_HELPER = f'!f() {{ test "$1" = get && printf "username=%s\\npassword=%s\\n" "${_ENV_USER}" "${_ENV_PASSWORD}"; }}; f'


class GitSourceError(RuntimeError):
    """Checkout failed; the message names the cause and never holds credentials."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class GitCredentials:
    """HTTPS basic auth (password may be a token) and/or an SSH key with the hosts it may trust."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssh_private_key: str | None = field(default=None, repr=False)
    known_hosts: str | None = None

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str | bytes], *, base64_encoded: bool = True) -> GitCredentials:
        """From a Secret's `data` (base64) or `stringData`, with Argo CD and Flux key names.

        Keys: username; password or token or bearerToken; sshPrivateKey, identity or
        ssh-privatekey; known_hosts or knownHosts.
        """

        def get(*names: str) -> str | None:
            for name in names:
                value = data.get(name)
                if value is None:
                    continue
                raw = value.encode() if isinstance(value, str) else value
                if base64_encoded:
                    try:
                        raw = base64.b64decode(raw, validate=True)
                    except (binascii.Error, ValueError):
                        raise GitSourceError(f"credentials secret key {name!r} is not valid base64") from None
                return raw.decode("utf-8", errors="replace")
            return None

        return cls(
            username=get("username"),
            password=get("password", "token", "bearerToken"),
            ssh_private_key=get("sshPrivateKey", "identity", "ssh-privatekey"),
            known_hosts=get("known_hosts", "knownHosts"),
        )

    def secrets(self) -> list[str]:
        """Texts that must never appear in a message."""
        out = [s for s in (self.password,) if s]
        if self.ssh_private_key:
            out += [line for line in self.ssh_private_key.splitlines() if len(line.strip()) >= 8]
        return out


@dataclass(frozen=True)
class Checkout:
    path: str
    """Directory holding the files of the commit; do not write to it."""
    sha: str


def scrub(text: str, secrets: list[str] | None = None) -> str:
    """Drop `user:password@` from URLs and blank out every secret."""
    text = _PASSWORD.sub(r"\1@", _HTTP_USERINFO.sub(r"\1", text))
    for secret in sorted(secrets or (), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def split_credentials(repo_url: str) -> tuple[str, GitCredentials | None]:
    """`https://user:token@host/r.git` -> (`https://host/r.git`, credentials). Other URLs unchanged."""
    parts = urllib.parse.urlsplit(repo_url)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return repo_url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, has_password, password = userinfo.partition(":")
    clean = urllib.parse.urlunsplit(parts._replace(netloc=hostport))
    if has_password:
        creds = GitCredentials(username=urllib.parse.unquote(user), password=urllib.parse.unquote(password))
    else:  # a token given as the user name (GitHub style)
        creds = GitCredentials(username=urllib.parse.unquote(user) or None, password="")
    return clean, creds


def _check_url(url: str) -> None:
    if not url or url.startswith("-") or any(c.isspace() or ord(c) < 32 for c in url):
        raise GitSourceError(f"invalid repository URL {scrub(url)!r}")
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if "::" in url.split("/", 1)[0] or (scheme and scheme.lower() not in ALLOWED_PROTOCOLS.split(":")):
        raise GitSourceError(f"repository URL {scrub(url)!r} uses an unsupported transport")


def _check_revision(revision: str) -> str:
    revision = (revision or "HEAD").strip()
    if not _REVISION.fullmatch(revision) or revision.startswith("-") or ".." in revision or "@{" in revision:
        raise GitSourceError(f"invalid revision {revision!r}")
    return revision


class _Deadline:
    """One time budget for all git commands of a checkout."""

    def __init__(self, timeout: float, url: str) -> None:
        self.timeout = timeout
        self.url = url
        self._end = time.monotonic() + timeout

    def remaining(self) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            raise GitSourceError(f"timed out after {self.timeout:g}s fetching {self.url}")
        return left


@contextlib.contextmanager
def _git_environment(url: str, creds: GitCredentials | None, timeout: float) -> Iterator[dict[str, str]]:
    """Environment for git: no prompts, no user/system config, credentials for this call only."""
    env = {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",  # empty (not unset) also keeps git from falling back to SSH_ASKPASS
        "SSH_ASKPASS": "",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ALLOW_PROTOCOL": ALLOWED_PROTOCOLS,
        "LC_ALL": "C",
    }
    config = [("credential.helper", "")]  # no helper may store what we hand to git
    if creds is not None and (creds.username or creds.password):
        parts = urllib.parse.urlsplit(url)
        config.append((f"credential.{parts.scheme}://{parts.netloc}.helper", _HELPER))
        env[_ENV_USER] = creds.username or "git"
        env[_ENV_PASSWORD] = creds.password or ""
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for i, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    ssh = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
    ssh += ["-o", f"ConnectTimeout={max(1, min(int(timeout), 30))}"]
    with contextlib.ExitStack() as stack:
        if creds is not None and (creds.ssh_private_key or creds.known_hosts):
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="kubedrift-ssh-"))
            if creds.ssh_private_key:
                key_file = os.path.join(tmp, "id")
                _write_private(key_file, creds.ssh_private_key.strip() + "\n")
                ssh += ["-i", key_file, "-o", "IdentitiesOnly=yes"]
            if creds.known_hosts:
                hosts_file = os.path.join(tmp, "known_hosts")
                _write_private(hosts_file, creds.known_hosts.strip() + "\n")
                ssh += ["-o", f"UserKnownHostsFile={hosts_file}"]
        env["GIT_SSH_COMMAND"] = shlex.join(ssh)
        yield env


def _write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _explain(stderr: str, url: str, creds: GitCredentials | None, timeout: float) -> str:
    """A one-line cause for a failed network command."""
    low = stderr.lower()
    if "did not complete in" in low or "timed out because" in low or "process killed because it timed out" in low:
        return f"timed out after {timeout:g}s fetching {url}"
    auth_marks = (
        "authentication failed",
        "could not read username",
        "could not read password",
        "terminal prompts disabled",
        "access denied",
        "permission denied (publickey",
        "returned error: 401",
        "returned error: 403",
        "invalid username or password",
    )
    if any(mark in low for mark in auth_marks):
        hint = "" if creds is not None else " (no credentials given)"
        return f"authentication failed for {url}{hint}"
    if "host key verification failed" in low:
        return f"SSH host key verification failed for {url}: put the server's key in known_hosts"
    detail = _last_error_line(stderr)
    return f"repository {url} is unreachable: {detail}"


def _last_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("fatal:", "error:", "ssh:"))] or lines
    text = errors[0] if errors else "git gave no error output"
    return text[:300]


class GitCache:
    """Thread-safe cache of repositories; see the module docstring for the layout."""

    def __init__(self, cache_dir: str, *, keep_trees: int = DEFAULT_KEEP_TREES) -> None:
        self.cache_dir = os.path.abspath(cache_dir)
        self.keep_trees = max(1, keep_trees)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @staticmethod
    def key(repo_url: str) -> str:
        return hashlib.sha256(split_credentials(repo_url)[0].encode()).hexdigest()

    def checkout(
        self,
        repo_url: str,
        revision: str = "HEAD",
        *,
        credentials: GitCredentials | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Checkout:
        """Fetch `repo_url` and return the files of `revision` (branch, tag, full/short SHA or HEAD)."""
        url, url_credentials = split_credentials(repo_url.strip())
        creds = credentials or url_credentials
        secrets = (creds.secrets() if creds else []) + (url_credentials.secrets() if url_credentials else [])
        try:
            _check_url(url)
            revision = _check_revision(revision)
            key = hashlib.sha256(url.encode()).hexdigest()
            os.makedirs(self.cache_dir, exist_ok=True)
            deadline = _Deadline(timeout, url)
            with self._lock(key), _file_lock(os.path.join(self.cache_dir, key + ".lock")):
                root = os.path.join(self.cache_dir, key)
                with _git_environment(url, creds, timeout) as env:
                    repo = _open_bare(os.path.join(root, "repo.git"), url, env)
                    _fetch(repo, url, revision, env, creds, deadline)
                    sha = _resolve(repo, url, revision, env, creds, deadline)
                    path = _worktree(repo, os.path.join(root, "trees"), sha, env, deadline)
                    _prune(repo, os.path.join(root, "trees"), self.keep_trees, env, keep=sha)
            return Checkout(path=path, sha=sha)
        except GitSourceError as exc:
            raise GitSourceError(scrub(exc.message, secrets)) from None
        except (OSError, git.GitError) as exc:
            raise GitSourceError(scrub(f"git cache error for {url}: {type(exc).__name__}: {exc}", secrets)) from None

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())


@contextlib.contextmanager
def _file_lock(path: str) -> Iterator[None]:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(
    repo: git.Repo, args: list[str], env: dict[str, str], deadline: _Deadline | None = None
) -> tuple[int, str, str]:
    status, out, err = repo.git.execute(
        ["git", *args],
        with_extended_output=True,
        with_exceptions=False,
        kill_after_timeout=deadline.remaining() if deadline else None,
        env=env,
    )
    return int(status), str(out), str(err)


def _open_bare(path: str, url: str, env: dict[str, str]) -> git.Repo:
    """The cached bare repository, (re)created when missing or broken."""
    if os.path.isdir(path):
        try:
            repo = git.Repo(path)
            if repo.bare and repo.git.rev_parse("--git-dir"):
                return repo
        except (git.GitError, OSError, ValueError):
            pass
        shutil.rmtree(os.path.dirname(path))  # trees belong to the broken repository too
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".init-", dir=os.path.dirname(path))
    repo = git.Repo.init(tmp, bare=True, env=env)
    with repo.config_writer() as cfg:
        cfg.set_value('remote "origin"', "url", url)  # clean URL: credentials never go to config
        cfg.set_value("gc", "autoDetach", "false")
    os.rename(tmp, path)
    return git.Repo(path)


def _fetch(
    repo: git.Repo,
    url: str,
    revision: str,
    env: dict[str, str],
    creds: GitCredentials | None,
    deadline: _Deadline,
) -> None:
    refspecs = ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]
    if revision == "HEAD":
        refspecs.append("+HEAD:refs/kubedrift/HEAD")
    status, _, err = _run(
        repo, ["fetch", "--prune", "--force", "--no-recurse-submodules", "origin", *refspecs], env, deadline
    )
    if status != 0:
        if "couldn't find remote ref head" in err.lower():
            raise GitSourceError(f"unknown revision 'HEAD' in {url}: the repository has no default branch")
        raise GitSourceError(_explain(err, url, creds, deadline.timeout))


def _resolve(
    repo: git.Repo,
    url: str,
    revision: str,
    env: dict[str, str],
    creds: GitCredentials | None,
    deadline: _Deadline,
) -> str:
    if revision == "HEAD":
        candidates = ["refs/kubedrift/HEAD"]
    elif revision.startswith("refs/heads/"):
        candidates = ["refs/remotes/origin/" + revision.removeprefix("refs/heads/")]
    elif revision.startswith("refs/tags/"):
        candidates = [revision]
    else:
        candidates = [f"refs/remotes/origin/{revision}", f"refs/tags/{revision}"]
        if _HEX.fullmatch(revision):
            candidates.append(revision)
    for candidate in candidates:
        status, out, _ = _run(repo, ["rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}"], env)
        if status == 0 and out.strip():
            return out.strip()
    if len(revision) == 40 and _HEX.fullmatch(revision):
        # A commit no branch or tag reaches; servers that allow it hand it out by id.
        status, _, _ = _run(repo, ["fetch", "--no-recurse-submodules", "origin", revision], env, deadline)
        if status == 0:
            status, out, _ = _run(repo, ["rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], env)
            if status == 0:
                return out.strip()
    raise GitSourceError(f"unknown revision {revision!r} in {url}: no such branch, tag or commit")


def _worktree(repo: git.Repo, trees: str, sha: str, env: dict[str, str], deadline: _Deadline) -> str:
    path = os.path.join(trees, sha)
    ready = path + ".ready"
    if os.path.isdir(path) and os.path.exists(ready):
        os.utime(ready)
        return path
    os.makedirs(trees, exist_ok=True)
    if os.path.lexists(path):  # left over from an interrupted checkout
        shutil.rmtree(path, ignore_errors=True)
    _run(repo, ["worktree", "prune"], env)
    status, _, err = _run(repo, ["worktree", "add", "--detach", "--force", path, sha], env, deadline)
    if status != 0:
        raise GitSourceError(f"checkout of {sha} failed: {_last_error_line(err)}")
    with open(ready, "w"):
        pass
    return path


def _prune(repo: git.Repo, trees: str, keep_count: int, env: dict[str, str], *, keep: str) -> None:
    """Remove the least recently used worktrees beyond `keep_count`."""
    markers = [os.path.join(trees, name) for name in os.listdir(trees) if name.endswith(".ready")]
    markers.sort(key=os.path.getmtime, reverse=True)
    removed = False
    for marker in markers[keep_count:]:
        path = marker.removesuffix(".ready")
        if os.path.basename(path) == keep:
            continue
        os.unlink(marker)
        shutil.rmtree(path, ignore_errors=True)
        removed = True
    if removed:
        _run(repo, ["worktree", "prune"], env)
