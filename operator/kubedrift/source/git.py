"""Git checkouts for policies: one cached bare clone per namespace and repoURL, one worktree per commit.

Layout under the cache dir, for `key = sha256(namespace NUL repoURL)` (tenants never share a clone):
    <key>.lock            flock taken while fetching/checking out (serializes processes too)
    <key>/repo.git        bare repository, fetched on every checkout
    <key>/trees/<sha>     detached worktree of one commit, shared by every policy at that commit
    <key>/trees/<sha>.ready  written once the worktree is complete; its mtime marks the last use

Credentials never reach disk: HTTPS ones reach git through a credential helper that reads them
from the environment of that one git process; SSH keys live in a 0600 temp file for the call.

Transports (SPEC §3): `https://`, `ssh://` and `user@host:path`; `http://` only with
KUBEDRIFT_ALLOW_INSECURE_HTTP=1 and never with credentials; local paths and `file://` only with
KUBEDRIFT_ALLOW_FILE_REPOS=1 (and never into the cache itself); `ext::`, `git://` and every other
remote helper never. A repoURL with user info is refused (credentials belong in a Secret), and
no message repeats what a URL holds before its `@`.
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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import git

from kubedrift.model import KubedriftError

DEFAULT_TIMEOUT = 60.0
DEFAULT_KEEP_TREES = 8
ALLOW_INSECURE_HTTP_ENV = "KUBEDRIFT_ALLOW_INSECURE_HTTP"
ALLOW_FILE_REPOS_ENV = "KUBEDRIFT_ALLOW_FILE_REPOS"
CREDENTIALS_LABEL = "kubedrift.dev/git-credentials"

_HEX = re.compile(r"[0-9a-f]{4,40}")
_SSH_USER = re.compile(r"[A-Za-z0-9._-]+")
_SCP_LIKE = re.compile(r"(?P<user>[^@/:]+)@(?P<host>[^/:]+):(?P<path>.+)")
_REVISION = re.compile(r"[A-Za-z0-9._/@+-]+")
# Any user info of an HTTP(S) URL (a user name may be a token); the password part of others.
_HTTP_USERINFO = re.compile(r"(?i)\b(https?://)[^/\s@]*@")
_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^/\s@]*@")
_ENV_USER = "KUBEDRIFT_GIT_USERNAME"
_ENV_PASSWORD = "KUBEDRIFT_GIT_PASSWORD"
# A credential helper that answers from the environment of the git process it runs under.
_HELPER = f'!f() {{ test "$1" = get && printf "username=%s\\npassword=%s\\n" "${_ENV_USER}" "${_ENV_PASSWORD}"; }}; f'


class GitSourceError(KubedriftError, RuntimeError):
    """Checkout failed; the message names the cause and never holds credentials."""


class CredentialsError(GitSourceError):
    """The policy's `spec.source.secretRef` cannot serve as git credentials (unreadable, not opted in, other URL)."""


SecretReader = Callable[[str], Mapping[str, Any]]
"""Reads Secret `name` of the policy's namespace as the policy's own identity (so never one its service account
could not read); raises KubedriftError whose message says why not (`not found`, `cannot be read: ...`)."""


@dataclass(frozen=True)
class GitCredentials:
    """HTTPS basic auth (password may be a token) and/or an SSH key with the hosts it may trust."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssh_private_key: str | None = field(default=None, repr=False)
    known_hosts: str | None = None
    url: str | None = None
    """The repository URL prefix these credentials are for (Argo CD's `url` key); None: any."""

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
            url=get("url"),
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


@dataclass(frozen=True)
class TransportPolicy:
    """Which transports beyond https/ssh this process accepts (SPEC §3 Git transports)."""

    allow_insecure_http: bool = False
    allow_file_repos: bool = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> TransportPolicy:
        env = os.environ if environ is None else environ
        return cls(
            allow_insecure_http=env.get(ALLOW_INSECURE_HTTP_ENV) == "1",
            allow_file_repos=env.get(ALLOW_FILE_REPOS_ENV) == "1",
        )

    def git_protocols(self) -> str:
        """GIT_ALLOW_PROTOCOL for every git process: nothing else (no ext::, no git://) may run."""
        allowed = ["https", "ssh"]
        allowed += ["http"] if self.allow_insecure_http else []
        allowed += ["file"] if self.allow_file_repos else []
        return ":".join(allowed)


@dataclass(frozen=True)
class RepoURL:
    """A checked repoURL: `url` is what git gets, `transport` one of https/http/ssh/file."""

    url: str
    transport: str


def _refuse(why: str) -> GitSourceError:
    return GitSourceError(f"spec.source.repoURL: {why}")


def check_repo_url(repo_url: str, transports: TransportPolicy) -> RepoURL:
    """The transport of `repo_url`, or a GitSourceError that never repeats the URL's user info."""
    url = repo_url.strip()
    if "::" in url.split("/", 1)[0]:
        raise _refuse("remote helpers such as ext:: are never allowed")
    if not url or url.startswith("-") or any(c.isspace() or ord(c) < 32 for c in url):
        raise _refuse("not a valid repository URL")
    if "://" in url:
        scheme, rest = url.split("://", 1)
        scheme = scheme.lower()
        if scheme in ("https", "http"):
            if "@" in rest:
                raise _refuse("user info in the URL is not allowed; name a Secret in spec.source.secretRef")
            if scheme == "http" and not transports.allow_insecure_http:
                raise _refuse(f"plain http:// is refused unless {ALLOW_INSECURE_HTTP_ENV}=1; use https://")
            return RepoURL(url, scheme)
        if scheme == "ssh":
            user, at, host_path = rest.partition("@")
            if at and not _SSH_USER.fullmatch(user):
                raise _refuse("an ssh:// URL may name a user but no password; put keys in the Secret")
            if not (host_path if at else rest).split("/", 1)[0]:
                raise _refuse("an ssh:// URL needs a host")
            return RepoURL(url, "ssh")
        if scheme == "file":
            if not transports.allow_file_repos:
                raise _refuse(f"file:// repositories are refused unless {ALLOW_FILE_REPOS_ENV}=1")
            return RepoURL(url, "file")
        raise _refuse(f"unsupported transport {scheme}:// (use https://, ssh:// or user@host:path)")
    scp = _SCP_LIKE.fullmatch(url)
    if scp is not None and "/" not in url.split(":", 1)[0]:
        if not _SSH_USER.fullmatch(scp["user"]):
            raise _refuse("the user of a user@host:path URL may hold letters, digits and . _ - only")
        return RepoURL(url, "ssh")
    if ":" in url.split("/", 1)[0] and not url.startswith(("/", ".")):
        raise _refuse("unsupported transport (use https://, ssh:// or user@host:path)")
    if not transports.allow_file_repos:
        raise _refuse(f"local repository paths are refused unless {ALLOW_FILE_REPOS_ENV}=1")
    return RepoURL(url, "file")


def _under_prefix(url: str, prefix: str) -> bool:
    """Argo CD's repository-credential rule: `url` starts with `prefix`, at a path boundary."""
    if not prefix or not url.startswith(prefix):
        return False
    return len(url) == len(prefix) or prefix.endswith(("/", ":")) or url[len(prefix)] in "/:"


def credentials_for_policy(secret_ref: str | None, repo_url: str, namespace: str,
                           read_secret: SecretReader) -> GitCredentials | None:
    """The git credentials of a policy's `spec.source.secretRef`, or None when it names none.

    Raises CredentialsError naming the field and the Secret (never a value of it)."""
    if not secret_ref:
        return None
    where = f"spec.source.secretRef: Secret {namespace}/{secret_ref}"
    try:
        secret = read_secret(secret_ref)
    except KubedriftError as exc:
        raise CredentialsError(f"{where} {exc.message}") from None
    try:
        return credentials_for_repo(secret, repo_url)
    except GitSourceError as exc:
        raise CredentialsError(f"{where}: {exc.message}") from None


def credentials_for_repo(secret: Mapping[str, Any], repo_url: str) -> GitCredentials:
    """The credentials of a Secret for `repo_url`, if the Secret opts in and may serve that URL.

    A Secret is used only when labelled `kubedrift.dev/git-credentials: "true"` (so no policy can
    send a service-account token or a database password to a host it names) and, when it has a
    `url` key, only for repository URLs under that prefix.
    """
    meta = secret.get("metadata") if isinstance(secret.get("metadata"), Mapping) else {}
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    if not isinstance(labels, Mapping) or str(labels.get(CREDENTIALS_LABEL, "")).lower() != "true":
        raise GitSourceError(f"the Secret is not labelled {CREDENTIALS_LABEL}: \"true\"; it is not used for git")
    data = secret.get("data") if isinstance(secret.get("data"), Mapping) else {}
    assert isinstance(data, Mapping)
    creds = GitCredentials.from_secret_data(data)
    if creds.url is not None and not _under_prefix(repo_url.strip(), creds.url.strip()):
        raise GitSourceError("the Secret's `url` does not cover spec.source.repoURL; it is not used for this repo")
    return creds


def _display(url: str) -> str:
    """The URL as messages show it: no query or fragment (checked URLs hold no user info)."""
    return url.split("#", 1)[0].split("?", 1)[0]


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
def _git_environment(
    url: str, creds: GitCredentials | None, timeout: float, protocols: str = "https:ssh"
) -> Iterator[dict[str, str]]:
    """Environment for git: no prompts, no user/system config, credentials for this call only."""
    env = {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",  # empty (not unset) also keeps git from falling back to SSH_ASKPASS
        "SSH_ASKPASS": "",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ALLOW_PROTOCOL": protocols,
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

    def __init__(
        self, cache_dir: str, *, keep_trees: int = DEFAULT_KEEP_TREES, transports: TransportPolicy | None = None
    ) -> None:
        self.cache_dir = os.path.abspath(cache_dir)
        self.keep_trees = max(1, keep_trees)
        self.transports = transports if transports is not None else TransportPolicy.from_environment()
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    @staticmethod
    def key(repo_url: str, namespace: str) -> str:
        """One clone per tenant (namespace) and URL: no policy reuses what another tenant fetched."""
        return hashlib.sha256(f"{namespace}\0{repo_url.strip()}".encode()).hexdigest()

    def checkout(
        self,
        repo_url: str,
        revision: str = "HEAD",
        *,
        namespace: str,
        credentials: GitCredentials | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Checkout:
        """Fetch `repo_url` for a policy of `namespace` and return the files of `revision`.

        `revision`: branch, tag, full/short SHA or HEAD.
        """
        secrets = credentials.secrets() if credentials else []
        shown = "the repository"
        try:
            repo = check_repo_url(repo_url, self.transports)
            url = shown = _display(repo.url)
            self._check_local(repo)
            if credentials is not None and repo.transport == "http":
                raise GitSourceError(f"credentials are never sent over plain http; use https for {url}")
            revision = _check_revision(revision)
            key = self.key(repo.url, namespace)
            os.makedirs(self.cache_dir, mode=0o700, exist_ok=True)
            deadline = _Deadline(timeout, url)
            with self._lock(key), _file_lock(os.path.join(self.cache_dir, key + ".lock")):
                root = os.path.join(self.cache_dir, key)
                protocols = self.transports.git_protocols()
                with _git_environment(repo.url, credentials, timeout, protocols) as env:
                    bare = _open_bare(os.path.join(root, "repo.git"), repo.url, env)
                    _fetch(bare, url, revision, env, credentials, deadline)
                    sha = _resolve(bare, url, revision, env, credentials, deadline)
                    path = _worktree(bare, os.path.join(root, "trees"), sha, env, deadline)
                    _prune(bare, os.path.join(root, "trees"), self.keep_trees, env, keep=sha)
            return Checkout(path=path, sha=sha)
        except GitSourceError as exc:
            raise GitSourceError(scrub(exc.message, secrets)) from None
        except (OSError, git.GitError) as exc:
            raise GitSourceError(scrub(f"git cache error for {shown}: {type(exc).__name__}", secrets)) from None

    def _check_local(self, repo: RepoURL) -> None:
        """A local repository may never be the cache itself (other tenants' clones live there)."""
        if repo.transport != "file":
            return
        path = repo.url.removeprefix("file://") if repo.url.startswith("file://") else repo.url
        real = os.path.realpath(path)
        cache = os.path.realpath(self.cache_dir)
        if real == cache or real.startswith(cache + os.sep):
            raise _refuse("a repository inside the git cache is refused")

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
