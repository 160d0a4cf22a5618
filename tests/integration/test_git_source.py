"""GitCache (source/git.py) against real git repositories: local paths, smart HTTP(S) with basic auth."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.git_http import GitHttpServer, commit_files, git, init_repo, serve_git_http

from kubedrift.model import KubedriftError
from kubedrift.source.git import (
    Checkout,
    CredentialsError,
    GitCache,
    GitCredentials,
    GitSourceError,
    TransportPolicy,
    _git_environment,
    check_repo_url,
    credentials_for_policy,
    credentials_for_repo,
)
from kubedrift.source.manifests import load_manifests

pytestmark = pytest.mark.integration

USER = "deploy-bot"
TOKEN = "ghp_Sup3rS3cretT0kenValue"
TEAM = "team-a"
# These tests use local repositories and plain http on 127.0.0.1; test_hostile_sources covers the refusals.
LAB = TransportPolicy(allow_insecure_http=True, allow_file_repos=True)


def cm(name: str, value: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: {value!r}\n"


def fetch(cache: GitCache, url: str, revision: str = "HEAD", **kwargs: Any) -> Checkout:
    return cache.checkout(url, revision, namespace=TEAM, **kwargs)


def read(checkout: Checkout, rel: str) -> str:
    return (Path(checkout.path) / rel).read_text()


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A working repo: v1 (tagged, annotated) then v2 on main, and a `feature` branch from v1."""
    path = tmp_path / "origin"
    init_repo(path, {"apps/cm.yaml": cm("app", "v1")}, "v1")
    git("tag", "-a", "v1.0.0", "-m", "release 1", cwd=path)
    git("branch", "feature", cwd=path)
    commit_files(path, {"apps/cm.yaml": cm("app", "v2")}, "v2")
    return path


@pytest.fixture
def cache(tmp_path: Path) -> GitCache:
    return GitCache(str(tmp_path / "cache"), transports=LAB)


@pytest.fixture
def http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GitHttpServer]:
    """An https server: credentials are never sent over plain http."""
    with serve_git_http(tmp_path / "served", username=USER, password=TOKEN, tls=True) as server:
        monkeypatch.setenv("GIT_SSL_CAINFO", str(server.ca_file))
        server.create_repo("shop", {"apps/cm.yaml": cm("shop", "one")}, "one")
        yield server


def test_head_of_a_local_repo_is_checked_out(origin: Path, cache: GitCache) -> None:
    checkout = fetch(cache, str(origin), "HEAD")

    assert checkout.sha == git("rev-parse", "HEAD", cwd=origin)
    assert "'v2'" in read(checkout, "apps/cm.yaml")
    objects, errors = load_manifests([checkout.path])
    assert errors == []
    assert [(o.key.id, o.source) for o in objects] == [("ConfigMap:default:app", "apps/cm.yaml")]


@pytest.mark.parametrize(
    ("revision", "expected"),
    [
        ("main", "main"),
        ("refs/heads/main", "main"),
        ("feature", "feature"),
        ("v1.0.0", "v1.0.0^{commit}"),
        ("refs/tags/v1.0.0", "v1.0.0^{commit}"),
    ],
)
def test_branches_and_tags_resolve_to_their_commit(origin: Path, cache: GitCache, revision: str, expected: str) -> None:
    checkout = fetch(cache, str(origin), revision)

    assert checkout.sha == git("rev-parse", expected, cwd=origin)
    assert os.path.basename(checkout.path) == checkout.sha


def test_full_and_short_sha_resolve(origin: Path, cache: GitCache) -> None:
    first = git("rev-parse", "v1.0.0^{commit}", cwd=origin)

    full = fetch(cache, str(origin), first)
    short = fetch(cache, str(origin), first[:8])

    assert full == short
    assert full.sha == first
    assert "'v1'" in read(full, "apps/cm.yaml")


def test_new_commit_is_fetched_on_the_next_checkout(origin: Path, cache: GitCache) -> None:
    before = fetch(cache, str(origin), "main")
    new_sha = commit_files(origin, {"apps/cm.yaml": cm("app", "v3"), "apps/extra.yaml": cm("extra", "x")}, "v3")

    after = fetch(cache, str(origin), "main")

    assert after.sha == new_sha != before.sha
    assert "'v3'" in read(after, "apps/cm.yaml")
    assert (Path(after.path) / "apps/extra.yaml").exists()
    # The earlier checkout is untouched: a policy still reading it is not disturbed.
    assert "'v2'" in read(before, "apps/cm.yaml")


def test_two_revisions_side_by_side_share_one_clone(origin: Path, cache: GitCache, tmp_path: Path) -> None:
    old = fetch(cache, str(origin), "v1.0.0")
    new = fetch(cache, str(origin), "main")

    assert old.path != new.path
    assert "'v1'" in read(old, "apps/cm.yaml")
    assert "'v2'" in read(new, "apps/cm.yaml")
    repo_dirs = [p.name for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert repo_dirs == [hashlib.sha256(f"{TEAM}\0{origin}".encode()).hexdigest()]
    assert GitCache.key(str(origin), TEAM) == repo_dirs[0]


def test_concurrent_checkouts_of_one_repo_do_not_race(origin: Path, cache: GitCache) -> None:
    revisions = ["main", "v1.0.0", "feature", "HEAD"] * 2
    results: dict[int, Checkout | BaseException] = {}

    def run(i: int, revision: str) -> None:
        try:
            results[i] = fetch(cache, str(origin), revision)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i, r)) for i, r in enumerate(revisions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert all(isinstance(r, Checkout) for r in results.values()), results
    shas = {revisions[i]: r.sha for i, r in results.items() if isinstance(r, Checkout)}
    assert shas["main"] == shas["HEAD"] == git("rev-parse", "main", cwd=origin)
    assert shas["v1.0.0"] == shas["feature"] == git("rev-parse", "feature", cwd=origin)


def test_unknown_and_unsafe_revisions_are_errors(origin: Path, cache: GitCache, tmp_path: Path) -> None:
    with pytest.raises(GitSourceError, match="unknown revision 'no-such-branch'"):
        fetch(cache, str(origin), "no-such-branch")
    with pytest.raises(GitSourceError, match="unknown revision 'deadbeef'"):
        fetch(cache, str(origin), "deadbeef")
    marker = tmp_path / "pwned"
    with pytest.raises(GitSourceError, match="invalid revision"):
        fetch(cache, str(origin), f"--upload-pack=touch {marker}")
    with pytest.raises(GitSourceError, match="remote helpers such as ext:: are never allowed"):
        fetch(cache, "ext::true", "HEAD")
    assert not marker.exists()


def test_old_worktrees_beyond_the_limit_are_removed(origin: Path, tmp_path: Path) -> None:
    cache = GitCache(str(tmp_path / "cache"), keep_trees=2, transports=LAB)
    first = fetch(cache, str(origin), "v1.0.0")
    second = fetch(cache, str(origin), "main")
    third_sha = commit_files(origin, {"apps/cm.yaml": cm("app", "v3")}, "v3")

    third = fetch(cache, str(origin), "main")

    assert third.sha == third_sha
    assert not os.path.exists(first.path)
    assert os.path.isdir(second.path) and os.path.isdir(third.path)


def test_a_broken_cache_is_rebuilt(origin: Path, cache: GitCache, tmp_path: Path) -> None:
    first = fetch(cache, str(origin), "main")
    repo_git = tmp_path / "cache" / GitCache.key(str(origin), TEAM) / "repo.git"
    (repo_git / "HEAD").unlink()  # no longer a repository

    again = fetch(cache, str(origin), "main")

    assert again.sha == first.sha
    assert "'v2'" in read(again, "apps/cm.yaml")


def test_http_with_the_right_token(http: GitHttpServer, cache: GitCache, tmp_path: Path) -> None:
    creds = GitCredentials(username=USER, password=TOKEN)

    checkout = fetch(cache, http.url("shop"), "main", credentials=creds)

    assert "'one'" in read(checkout, "apps/cm.yaml")
    assert http.authenticated and set(http.authenticated) == {USER}
    # The token reaches git through the environment only: nothing on disk holds it.
    for root, _, files in os.walk(tmp_path / "cache"):
        for name in files:
            assert TOKEN.encode() not in (Path(root) / name).read_bytes(), os.path.join(root, name)


def test_http_fetches_new_commits_and_tags(http: GitHttpServer, cache: GitCache) -> None:
    creds = GitCredentials(username=USER, password=TOKEN)
    first = fetch(cache, http.url("shop"), "HEAD", credentials=creds)
    second_sha = http.commit("shop", {"apps/cm.yaml": cm("shop", "two")}, "two", tag="v2")

    by_tag = fetch(cache, http.url("shop"), "v2", credentials=creds)
    by_head = fetch(cache, http.url("shop"), "HEAD", credentials=creds)

    assert by_tag.sha == by_head.sha == second_sha != first.sha
    assert "'two'" in read(by_head, "apps/cm.yaml")


def test_credentials_in_the_url_are_refused_without_repeating_them(http: GitHttpServer, cache: GitCache) -> None:
    for password in (TOKEN, "pa/ss#wo?rd"):
        url = http.url("shop").replace("https://", f"https://{USER}:{password}@")
        with pytest.raises(GitSourceError, match="user info in the URL is not allowed") as info:
            fetch(cache, url, "main")
        assert password not in str(info.value) and USER not in str(info.value)
        assert "wo?rd" not in str(info.value) and "ss#" not in str(info.value)
    assert http.authenticated == [] and http.rejected == 0  # nothing was sent


def test_wrong_token_is_an_authentication_error_without_the_token(http: GitHttpServer, cache: GitCache) -> None:
    wrong = "ghp_WrongTokenValue123456"

    with pytest.raises(GitSourceError) as info:
        fetch(cache, http.url("shop"), "main", credentials=GitCredentials(username=USER, password=wrong))

    assert "authentication failed" in info.value.message
    assert http.url("shop") in info.value.message
    assert wrong not in info.value.message and wrong not in str(info.value)
    assert http.rejected >= 1


def test_missing_credentials_is_an_authentication_error(http: GitHttpServer, cache: GitCache) -> None:
    with pytest.raises(GitSourceError, match=r"authentication failed for .*\(no credentials given\)"):
        fetch(cache, http.url("shop"), "main")


def test_unreachable_repository_is_an_error(cache: GitCache, http: GitHttpServer) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    with pytest.raises(GitSourceError, match=rf"repository http://127\.0\.0\.1:{port}/x\.git is unreachable"):
        fetch(cache, f"http://127.0.0.1:{port}/x.git", "main")
    with pytest.raises(GitSourceError, match="is unreachable"):
        fetch(cache, http.url("no-such-repo"), "main", credentials=GitCredentials(USER, TOKEN))
    key = GitCredentials(ssh_private_key="-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END")
    with pytest.raises(GitSourceError, match=rf"ssh://git@127\.0\.0\.1:{port}/x\.git is unreachable: .*refused"):
        fetch(cache, f"ssh://git@127.0.0.1:{port}/x.git", "main", credentials=key)


def test_a_server_that_never_answers_times_out(cache: GitCache) -> None:
    with socket.socket() as silent:  # accepts connections (backlog), never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/repo.git"

        with pytest.raises(GitSourceError, match=r"timed out after 1s fetching http://127\.0\.0\.1:\d+/repo\.git"):
            fetch(cache, url, "main", timeout=1.0)


def test_ssh_key_file_is_private_and_removed_and_host_keys_are_checked() -> None:
    creds = GitCredentials(
        ssh_private_key="-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAB3NzaC1yc2E\n-----END OPENSSH PRIVATE KEY-----",
        known_hosts="git.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5",
    )

    with _git_environment("ssh://git@git.example.com/r.git", creds, 10.0) as env:
        command = env["GIT_SSH_COMMAND"]
        key_file = command.split(" -i ", 1)[1].split()[0]
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        assert Path(key_file).read_text().endswith("-----END OPENSSH PRIVATE KEY-----\n")
        assert "StrictHostKeyChecking=yes" in command and "UserKnownHostsFile=" in command
        assert "AAAAB3NzaC1yc2E" not in command
        assert env["GIT_TERMINAL_PROMPT"] == "0"

    assert not os.path.exists(key_file)


def test_credentials_from_secret_data_and_their_repr() -> None:
    data = {"username": "Ym90", "token": "czNjcjN0", "sshPrivateKey": "a2V5"}

    creds = GitCredentials.from_secret_data(data)

    assert creds == GitCredentials(username="bot", password="s3cr3t", ssh_private_key="key")
    assert "s3cr3t" not in repr(creds) and "key'" not in repr(creds)
    with pytest.raises(GitSourceError, match="'password' is not valid base64"):
        GitCredentials.from_secret_data({"password": "not base64!"})


def test_each_namespace_gets_its_own_clone(origin: Path, cache: GitCache, tmp_path: Path) -> None:
    team_a = cache.checkout(str(origin), "main", namespace="team-a")
    team_b = cache.checkout(str(origin), "main", namespace="team-b")

    assert team_a.sha == team_b.sha and team_a.path != team_b.path
    clones = sorted(p.name for p in (tmp_path / "cache").iterdir() if p.is_dir())
    assert clones == sorted([GitCache.key(str(origin), "team-a"), GitCache.key(str(origin), "team-b")])


def test_the_cache_itself_is_never_a_repository_even_with_file_repos_allowed(
    origin: Path, cache: GitCache, tmp_path: Path
) -> None:
    victim = cache.checkout(str(origin), "main", namespace="victim")
    cached = tmp_path / "cache" / GitCache.key(str(origin), "victim") / "repo.git"

    for url in (str(cached), f"file://{cached}", os.path.join(victim.path, "..", "..", "repo.git")):
        with pytest.raises(GitSourceError, match="a repository inside the git cache is refused"):
            cache.checkout(url, "main", namespace="attacker")


def test_defaults_refuse_file_and_http_and_git_allows_only_the_accepted_protocols(origin: Path, tmp_path: Path) -> None:
    strict = GitCache(str(tmp_path / "strict"), transports=TransportPolicy.from_environment({}))

    with pytest.raises(GitSourceError, match="local repository paths are refused unless KUBEDRIFT_ALLOW_FILE_REPOS=1"):
        strict.checkout(str(origin), "main", namespace=TEAM)
    with pytest.raises(GitSourceError, match="plain http:// is refused unless KUBEDRIFT_ALLOW_INSECURE_HTTP=1"):
        strict.checkout("http://127.0.0.1:1/r.git", "main", namespace=TEAM)
    assert not (tmp_path / "strict").exists()  # refused before anything was fetched or created
    assert TransportPolicy.from_environment({}).git_protocols() == "https:ssh"
    assert LAB.git_protocols() == "https:ssh:http:file"
    with _git_environment("https://h/r.git", None, 5.0, "https:ssh") as env:
        assert env["GIT_ALLOW_PROTOCOL"] == "https:ssh"


def test_credentials_are_never_sent_over_plain_http(cache: GitCache) -> None:
    with serve_git_http(Path(cache.cache_dir).parent / "plain", username=USER, password=TOKEN) as plain:
        plain.create_repo("r", {"cm.yaml": cm("r", "1")})
        with pytest.raises(GitSourceError, match="credentials are never sent over plain http"):
            fetch(cache, plain.url("r"), "main", credentials=GitCredentials(USER, TOKEN))
        assert plain.authenticated == [] and plain.rejected == 0


@pytest.mark.parametrize(
    ("url", "transport"),
    [
        ("https://github.com/org/repo.git", "https"),
        ("ssh://git@github.com/org/repo.git", "ssh"),
        ("git@github.com:org/repo.git", "ssh"),
        ("http://git.local/repo.git", "http"),
        ("file:///srv/repo.git", "file"),
        ("/srv/repo.git", "file"),
    ],
)
def test_accepted_transports(url: str, transport: str) -> None:
    assert check_repo_url(url, LAB).transport == transport


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ext::sh -c id", "remote helpers such as ext:: are never allowed"),
        ("fd::3", "remote helpers such as ext:: are never allowed"),
        ("git://github.com/org/repo.git", "unsupported transport git://"),
        ("ftp://host/repo.git", "unsupported transport ftp://"),
        ("https://user:pa/ss@github.com/org/repo.git", "user info in the URL is not allowed"),
        ("https://ghp_token@github.com/org/repo.git", "user info in the URL is not allowed"),
        ("ssh://git:pa#ss@github.com/org/repo.git", "may name a user but no password"),
        ("-uhost:path", "not a valid repository URL"),
        ("bad user@host:path", "not a valid repository URL"),
    ],
)
def test_refused_urls_never_repeat_their_user_info(url: str, message: str) -> None:
    with pytest.raises(GitSourceError, match=message) as info:
        check_repo_url(url, LAB)
    assert "pa/ss" not in str(info.value) and "pa#ss" not in str(info.value) and "ghp_token" not in str(info.value)


def _secret(labels: dict[str, str] | None, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": "git", "labels": labels},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def test_secrets_serve_only_when_they_opt_in_and_only_under_their_url() -> None:
    opted = {"kubedrift.dev/git-credentials": "true"}
    repo = "https://git.example.com/team-a/app.git"

    with pytest.raises(GitSourceError, match=r'not labelled kubedrift.dev/git-credentials: "true"'):
        credentials_for_repo(_secret(None, token="sa-token"), repo)
    with pytest.raises(GitSourceError, match=r"does not cover spec.source.repoURL"):
        credentials_for_repo(_secret(opted, password="p", url="https://git.example.com/team-b"), repo)
    with pytest.raises(GitSourceError, match=r"does not cover spec.source.repoURL"):
        credentials_for_repo(_secret(opted, password="p", url="https://git.example.com/team"), repo)
    for prefix in ("https://git.example.com/team-a", "https://git.example.com/team-a/", repo):
        creds = credentials_for_repo(_secret(opted, username="bot", password="p", url=prefix), repo)
        assert (creds.username, creds.password) == ("bot", "p")
    assert credentials_for_repo(_secret(opted, password="p"), repo).password == "p"


def test_a_policys_secret_ref_is_decided_here_whoever_reads_the_secret() -> None:
    """source/ decides from what the reader gives (the operator passes a read as the policy's identity)."""
    opted = {"kubedrift.dev/git-credentials": "true"}
    repo = "https://git.example.com/team-a/app.git"
    asked: list[str] = []

    def reader(secret: dict[str, Any]) -> Any:
        def read(name: str) -> dict[str, Any]:
            asked.append(name)
            return secret
        return read

    def unreadable(name: str) -> dict[str, Any]:
        raise KubedriftError("cannot be read: forbidden for system:serviceaccount:team-a:reader")

    assert credentials_for_policy(None, repo, TEAM, reader({})) is None and asked == []
    creds = credentials_for_policy("git", repo, TEAM, reader(_secret(opted, username="bot", password="p")))
    assert creds is not None and (creds.username, creds.password) == ("bot", "p") and asked == ["git"]
    with pytest.raises(CredentialsError) as info:
        credentials_for_policy("git", repo, TEAM, unreadable)
    assert info.value.message == ("spec.source.secretRef: Secret team-a/git cannot be read: "
                                  "forbidden for system:serviceaccount:team-a:reader")
    with pytest.raises(CredentialsError) as info:
        credentials_for_policy("db", repo, TEAM, reader(_secret(None, password="hunter2")))
    assert info.value.message.startswith("spec.source.secretRef: Secret team-a/db: the Secret is not labelled")
    assert "hunter2" not in info.value.message
