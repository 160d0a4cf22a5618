"""One spelling per repository, whatever transport a policy or a Git host's webhook uses."""

from __future__ import annotations

import pytest

from kubedrift.publish.scan_trigger import pushed_repositories, repository_identity


@pytest.mark.parametrize("url", [
    "https://github.com/Org/App.git",
    "https://github.com/org/app",
    "https://github.com/org/app/",
    "https://token:x-oauth@github.com/org/app.git",
    "ssh://git@github.com:22/org/app.git",
    "git@github.com:org/app.git",
    "github.com:org/app",
])
def test_every_spelling_of_one_repository_is_one_identity(url: str) -> None:
    assert repository_identity(url) == "github.com/org/app"


def test_other_repositories_and_hosts_differ() -> None:
    assert repository_identity("https://github.com/org/app-config") != repository_identity("git@github.com:org/app")
    assert repository_identity("https://gitlab.com/org/app") != repository_identity("https://github.com/org/app")


def test_payloads_of_github_gitea_and_gitlab() -> None:
    github = {"repository": {"clone_url": "https://github.com/org/app.git", "ssh_url": "git@github.com:org/app.git",
                             "html_url": "https://github.com/org/app"}}
    gitlab = {"project": {"git_http_url": "https://gitlab.com/org/db.git", "git_ssh_url": "git@gitlab.com:org/db.git"}}
    assert pushed_repositories(github) == {"github.com/org/app"}
    assert pushed_repositories(gitlab) == {"gitlab.com/org/db"}
    assert pushed_repositories({"repository": {"clone_url": ["not", "a", "string"]}}) == set()
    assert pushed_repositories({"repository": {"clone_url": "x" * 100_000}}) == set()
    assert pushed_repositories([1, 2, 3]) == set()
