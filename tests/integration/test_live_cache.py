"""The shared live-object cache against the API emulator over real HTTP: paginated LISTs, watch events,
bookmarks, resuming, relisting on 410 Gone without losing a change, 403 as an error state, reference
counting, impersonated watches, and what it keeps in memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from tests.support.emulator import EmulatorServer
from tests.support.objects import deployment
from tests.support.operator_process import wait_for

from kubedrift.cluster.cache import LiveCache
from kubedrift.cluster.client import KubeClient, resource_path
from kubedrift.cluster.watch import ObjectName, WatchKey, WatchSettings
from kubedrift.live_changes import LiveChanges

pytestmark = pytest.mark.integration

DEPLOYMENTS = WatchKey(None, "apps", "v1", "deployments", "Deployment", "shop")
FAST = WatchSettings(page_size=2, timeout_seconds=30, backoff_initial=0.05, backoff_max=0.5)


class Changes:
    """What the cache told its listener, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: list[tuple[WatchKey, frozenset[ObjectName]]] = []

    def __call__(self, key: WatchKey, names: frozenset[ObjectName]) -> None:
        with self._lock:
            self.seen.append((key, names))

    def names(self) -> set[ObjectName]:
        with self._lock:
            return {n for _, names in self.seen for n in names}

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[EmulatorServer, KubeClient]]:
    server = EmulatorServer().start()
    server.emulator.bookmark_interval = 0.2
    try:
        yield server, KubeClient.from_environment(str(server.write_kubeconfig(tmp_path / "kubeconfig")))
    finally:
        server.stop()


@pytest.fixture
def cache() -> Iterator[tuple[LiveCache, Changes]]:
    live = LiveCache(FAST)
    changes = Changes()
    live.add_listener(changes)
    try:
        yield live, changes
    finally:
        live.stop()


def _seed(server: EmulatorServer, count: int, namespace: str = "shop") -> None:
    for i in range(count):
        body = deployment(f"web-{i}", namespace)
        body["status"] = {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]}
        server.seed(body)


def _patch(client: KubeClient, name: str, replicas: int, namespace: str = "shop") -> None:
    client.request("PATCH", resource_path("apps", "v1", "deployments", namespace, name),
                   body={"spec": {"replicas": replicas}}, content_type="application/merge-patch+json")


def _replicas(cache: LiveCache, key: WatchKey, name: str) -> int | None:
    watch = cache.watch(key)
    assert watch is not None
    found = watch.objects([(key.namespace, name)])
    return int(found[0]["spec"]["replicas"]) if found else None


def _eventually(check: Callable[[], object], what: str) -> None:
    wait_for(lambda: bool(check()), what, timeout=15)


def test_paginated_list_then_watch_events(cluster: tuple[EmulatorServer, KubeClient],
                                          cache: tuple[LiveCache, Changes]) -> None:
    server, client = cluster
    live, changes = cache
    _seed(server, 5)
    pages_before = server.emulator.list_pages
    live.interest("shop/policy", {DEPLOYMENTS: None}, client)
    watch = live.watch(DEPLOYMENTS)
    assert watch is not None and watch.wait_settled(15) and watch.synced
    assert watch.size() == 5
    assert server.emulator.list_pages - pages_before == 3  # 5 objects in pages of 2
    stored = watch.objects([("shop", "web-0")])[0]
    assert "status" not in stored, "status is not kept: the diff ignores it"
    assert stored["kind"] == "Deployment" and stored["apiVersion"] == "apps/v1"
    changes.clear()

    _patch(client, "web-3", 9)
    _eventually(lambda: _replicas(live, DEPLOYMENTS, "web-3") == 9, "the patched replicas in the cache")
    assert ("shop", "web-3") in changes.names()

    client.request("DELETE", resource_path("apps", "v1", "deployments", "shop", "web-1"))
    _eventually(lambda: ("shop", "web-1") in changes.names() and watch.size() == 4, "the deletion")
    assert _replicas(live, DEPLOYMENTS, "web-1") is None
    assert watch.stats.lists == 1, "events kept the cache current without another LIST"


def test_bookmarks_keep_the_resume_version_fresh(cluster: tuple[EmulatorServer, KubeClient],
                                                 cache: tuple[LiveCache, Changes]) -> None:
    server, client = cluster
    live, _ = cache
    _seed(server, 2)
    live.interest("shop/policy", {DEPLOYMENTS: None}, client)
    watch = live.watch(DEPLOYMENTS)
    assert watch is not None and watch.wait_settled(15)
    listed_at = int(watch.resource_version)
    server.seed(deployment("elsewhere", "other"))  # moves the server's version, not this watch's objects
    _eventually(lambda: int(watch.resource_version) > listed_at, "a bookmark with the newer version")
    assert watch.stats.bookmarks >= 1


def test_a_broken_watch_resumes_and_a_410_relists_without_losing_a_change(
        cluster: tuple[EmulatorServer, KubeClient], cache: tuple[LiveCache, Changes]) -> None:
    server, client = cluster
    live, changes = cache
    _seed(server, 4)
    live.interest("shop/policy", {DEPLOYMENTS: None}, client)
    watch = live.watch(DEPLOYMENTS)
    assert watch is not None and watch.wait_settled(15)

    # A plain break (server timeout, network): the stream resumes from its version; no LIST.
    _eventually(lambda: server.open_watches("deployments") == 1, "the open watch")
    assert server.break_watches() == 1
    _patch(client, "web-0", 4)
    _eventually(lambda: _replicas(live, DEPLOYMENTS, "web-0") == 4, "the change made while the stream was down")
    assert watch.stats.lists == 1 and watch.stats.expired == 0

    # Changes while no watch can be opened, then the history is compacted: the resume gets 410, the cache
    # lists again and reports the changes the LIST shows (one modified, one deleted, one created meanwhile).
    _eventually(lambda: server.open_watches("deployments") == 1, "the resumed watch")
    changes.clear()
    server.refuse_watches()
    _patch(client, "web-2", 7)
    client.request("DELETE", resource_path("apps", "v1", "deployments", "shop", "web-3"))
    server.seed(deployment("web-9", "shop"))
    server.expire_history()
    assert not changes.names(), "no watch was open to see them"
    server.refuse_watches(False)
    _eventually(lambda: watch.stats.expired >= 1 and watch.stats.lists >= 2, "a relist after 410 Gone")
    _eventually(lambda: {("shop", "web-2"), ("shop", "web-3"), ("shop", "web-9")} <= changes.names(),
                "every change of the gap reported")
    assert _replicas(live, DEPLOYMENTS, "web-2") == 7
    assert _replicas(live, DEPLOYMENTS, "web-3") is None
    assert _replicas(live, DEPLOYMENTS, "web-9") == 2
    assert ("shop", "web-1") not in changes.names(), "an object that did not change is not reported"


def test_forbidden_is_an_error_state_until_the_list_works_again(cluster: tuple[EmulatorServer, KubeClient],
                                                                cache: tuple[LiveCache, Changes]) -> None:
    server, client = cluster
    live, changes = cache
    _seed(server, 2)
    server.forbid("apps", "deployments")
    live.interest("shop/policy", {DEPLOYMENTS: None}, client)
    watch = live.watch(DEPLOYMENTS)
    assert watch is not None and watch.wait_settled(15)
    failure = watch.failure
    assert failure is not None and failure.status == 403 and "forbidden" in failure.message
    assert not watch.synced
    server.allow("apps", "deployments")
    _eventually(lambda: watch.synced, "the kind readable again")
    assert watch.size() == 2
    assert {("shop", "web-0"), ("shop", "web-1")} <= changes.names(), "recovered objects are compared again"


def test_watches_are_shared_and_stop_with_their_last_owner(cluster: tuple[EmulatorServer, KubeClient],
                                                           cache: tuple[LiveCache, Changes]) -> None:
    server, client = cluster
    live, _ = cache
    _seed(server, 3)
    live.interest("shop/a", {DEPLOYMENTS: frozenset({("shop", "web-0")})}, client)
    live.interest("shop/b", {DEPLOYMENTS: frozenset({("shop", "web-1")})}, client)
    watch = live.watch(DEPLOYMENTS)
    assert watch is not None and watch.wait_settled(15)
    _eventually(lambda: server.open_watches("deployments") == 1, "one watch for both policies")
    _eventually(lambda: watch.size() == 2, "the objects both want")
    assert _replicas(live, DEPLOYMENTS, "web-2") is None, "an object no policy declares is not kept"

    # A new commit makes policy a declare another object: the watch lists again to read it.
    live.interest("shop/a", {DEPLOYMENTS: frozenset({("shop", "web-0"), ("shop", "web-2")})}, client)
    _eventually(lambda: _replicas(live, DEPLOYMENTS, "web-2") == 2, "the newly declared object")

    live.release("shop/a")
    assert live.watch(DEPLOYMENTS) is watch and server.open_watches("deployments") == 1
    live.release("shop/b")
    assert live.watch(DEPLOYMENTS) is None
    _eventually(lambda: server.open_watches("deployments") == 0, "the watch closed with its last owner")


def test_a_policy_with_a_service_account_watches_as_it(cluster: tuple[EmulatorServer, KubeClient],
                                                       cache: tuple[LiveCache, Changes]) -> None:
    server, client = cluster
    live, _ = cache
    _seed(server, 1, "team-a")
    _seed(server, 1, "team-b")
    user = "system:serviceaccount:team-a:reader"
    rbac = "rbac.authorization.k8s.io/v1"
    server.seed({"apiVersion": rbac, "kind": "Role", "metadata": {"name": "read", "namespace": "team-a"},
                 "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list", "watch"]}]})
    server.seed({"apiVersion": rbac, "kind": "RoleBinding", "metadata": {"name": "read", "namespace": "team-a"},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read"},
                 "subjects": [{"kind": "ServiceAccount", "namespace": "team-a", "name": "reader"}]})
    server.seed({"apiVersion": rbac, "kind": "ClusterRole",
                 "metadata": {"name": "impersonator"},
                 "rules": [{"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}]})
    server.seed({"apiVersion": rbac, "kind": "ClusterRoleBinding",
                 "metadata": {"name": "impersonator"},
                 "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "impersonator"},
                 "subjects": [{"kind": "ServiceAccount", "namespace": "kubedrift", "name": "kubedrift"}]})
    as_reader = client.impersonating(user)
    own = WatchKey(user, "apps", "v1", "deployments", "Deployment", "team-a")
    other = WatchKey(user, "apps", "v1", "deployments", "Deployment", "team-b")
    live.interest("team-a/policy", {own: None, other: None}, as_reader)
    own_watch, other_watch = live.watch(own), live.watch(other)
    assert own_watch is not None and other_watch is not None
    assert own_watch.wait_settled(15) and other_watch.wait_settled(15)
    assert own_watch.synced and own_watch.size() == 1
    failure = other_watch.failure
    assert failure is not None and failure.status == 403 and user in failure.message
    _eventually(lambda: (user, "watch", "/apis/apps/v1/namespaces/team-a/deployments") in server.audit(),
                "the watch made as the service account")
    assert not any(u != user and "/namespaces/team-" in path for u, _, path in server.audit())


def test_a_burst_of_events_is_one_re_diff_per_policy(cluster: tuple[EmulatorServer, KubeClient],
                                                      cache: tuple[LiveCache, Changes]) -> None:
    server, client = cluster
    live, _ = cache
    _seed(server, 3)
    calls: list[tuple[str, dict[WatchKey, frozenset[ObjectName]]]] = []
    busy = threading.Event()

    done: list[tuple[str, dict[WatchKey, frozenset[ObjectName]]]] = []

    def refresh(owner: str, changes: Mapping[WatchKey, frozenset[ObjectName]]) -> bool:
        calls.append((owner, dict(changes)))
        if busy.is_set():
            return False  # the policy's full scan runs: ask again later
        done.append((owner, dict(changes)))
        return True

    dispatcher = LiveChanges(live, refresh, debounce=0.3, max_delay=5.0)
    dispatcher.start()
    try:
        live.interest("shop/a", {DEPLOYMENTS: frozenset({("shop", "web-0"), ("shop", "web-1")})}, client)
        live.interest("shop/b", {DEPLOYMENTS: frozenset({("shop", "web-2")})}, client)
        watch = live.watch(DEPLOYMENTS)
        assert watch is not None and watch.wait_settled(15)
        _eventually(lambda: len(calls) >= 2, "the initial LIST reported to both policies")
        calls.clear()
        for replicas in range(3, 13):  # a rollout's burst on one object, and one change to another
            _patch(client, "web-0", replicas)
        _patch(client, "web-1", 5)
        _eventually(lambda: calls, "the re-diff after the burst")
        time.sleep(1.0)  # nothing more comes
        both = {DEPLOYMENTS: frozenset({("shop", "web-0"), ("shop", "web-1")})}
        assert calls == [("shop/a", both)]

        calls.clear()
        busy.set()
        _patch(client, "web-0", 2)
        _eventually(lambda: len(calls) >= 2, "the re-diff asked again while the policy is busy")
        _patch(client, "web-1", 1)
        _eventually(lambda: calls[-1][1] == both, "the kept change merged with the new one")
        done.clear()
        busy.clear()
        _eventually(lambda: done, "done once the policy is free")
        time.sleep(1.0)
        assert done == [("shop/a", both)] and calls[-1] == done[-1], "and then nothing more"
        assert {owner for owner, _ in calls} == {"shop/a"}
    finally:
        dispatcher.stop()
