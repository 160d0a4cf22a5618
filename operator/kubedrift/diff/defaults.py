"""What the API server and its controllers write on their own, as data.

Evidence: Go types of kubernetes/api (commit 10b39a39bcee, 2026-07), cited as `core/v1/types.go:LINE`.
A field is named by the field that holds it, as the diff walks the object: `("env", "value")` is
`value` of an item of an `env` list, `("spec", "hostNetwork")` is `hostNetwork` of a pod spec.
"""

from __future__ import annotations

from typing import Any

_CONTAINERS = ("containers", "initContainers", "ephemeralContainers")
_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
# Volume sources whose `readOnly` is a plain bool (core/v1/types.go:234 persistentVolumeClaim,
# :1614 nfs, and the other in-tree sources). csi and azureDisk have `ReadOnly *bool`: not here.
_PLAIN_READ_ONLY_SOURCES = (
    "persistentVolumeClaim", "nfs", "rbd", "cinder", "cephfs", "gcePersistentDisk", "quobyte", "flexVolume",
    "awsElasticBlockStore", "iscsi", "fc", "azureFile", "portworxVolume", "scaleIO", "storageos", "glusterfs",
)


def _table(*entries: tuple[tuple[str, ...], tuple[str, ...]]) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for holders, fields in entries:
        for holder in holders:
            out.setdefault(holder, set()).update(fields)
    return {holder: frozenset(fields) for holder, fields in out.items()}


ZERO_OMITTED: dict[str, frozenset[str]] = _table(
    # Non-pointer `omitempty` fields: the server encodes their zero value (false, "", 0) as absent,
    # so `readOnly: false` in Git comes back without `readOnly`. Pointer fields (`*bool`, e.g.
    # automountServiceAccountToken, csi.readOnly, securityContext.*) keep their false: never here.
    (_CONTAINERS, ("stdin", "stdinOnce", "tty", "workingDir")),  # core/v1/types.go:3314,3323,3327,3161
    (("env",), ("value",)),  # EnvVar.Value string, core/v1/types.go:2663
    (("volumeMounts",), ("readOnly", "subPath", "subPathExpr")),  # core/v1/types.go:2536,2560,2574
    (("ports",), ("name", "hostPort", "hostIP", "nodePort")),  # ContainerPort :2509-2526, ServicePort :2522-2572
    (_PROBES, ("initialDelaySeconds",)),  # Probe.InitialDelaySeconds int32, core/v1/types.go:2942
    (("httpGet",), ("path", "host")),  # HTTPGetAction, core/v1/types.go:2835,2843
    (("tcpSocket",), ("host",)),  # TCPSocketAction.Host, core/v1/types.go:2878
    (("tolerations",), ("key", "operator", "value", "effect")),  # Toleration, core/v1/types.go:4316-4331
    (("resourceFieldRef",), ("containerName",)),  # core/v1/types.go:2735
    (_PLAIN_READ_ONLY_SOURCES, ("readOnly",)),
    # PodSpec (core/v1/types.go:4443-4529), ServiceSpec (:6374-6429), Deployment/StatefulSet/DaemonSetSpec
    # (apps/v1/types.go:281,442,452,722): all reached as fields of a `spec`.
    (
        ("spec",),
        (
            "hostNetwork", "hostPID", "hostIPC", "nodeName", "hostname", "subdomain", "serviceAccountName",
            "serviceAccount", "priorityClassName", "loadBalancerIP", "externalName", "healthCheckNodePort",
            "publishNotReadyAddresses", "paused", "minReadySeconds",
        ),
    ),
)

ZERO_OMITTED_EMBEDDED: dict[str, frozenset[str]] = {h: f for h, f in ZERO_OMITTED.items() if h != "spec"}
"""For custom resources: the Go types they embed (a Rollout's or a Knative Service's containers,
env, volumeMounts) read a zero value and an absent field alike; a CR's own `spec` fields may be
pointers, so they keep their zero values."""

ZERO_VALUES: tuple[Any, ...] = (False, "", 0)


def is_zero(value: Any) -> bool:
    """false, "" or 0 (and not a float such as 0.0, which no omitempty int field holds)."""
    return any(type(value) is type(zero) and value == zero for zero in ZERO_VALUES)


SERVER_DEFAULTS: dict[tuple[str, str], Any] = {
    # Values the server fills in when a field is left out: a field that holds exactly this value
    # is no evidence that Git dropped it (it would come back the same without it).
    ("ports", "protocol"): "TCP",  # SetDefaults_ContainerPort / SetDefaults_ServicePort (core/v1/defaults.go)
    ("spec", "sessionAffinity"): "None",  # SetDefaults_Service
    ("spec", "type"): "ClusterIP",  # SetDefaults_Service (a Service spec; no other built-in spec defaults `type`)
    ("spec", "restartPolicy"): "Always",  # SetDefaults_PodSpec
    ("spec", "dnsPolicy"): "ClusterFirst",  # SetDefaults_PodSpec
    ("spec", "schedulerName"): "default-scheduler",  # SetDefaults_PodSpec
    ("spec", "terminationGracePeriodSeconds"): 30,  # SetDefaults_PodSpec
    ("containers", "terminationMessagePath"): "/dev/termination-log",  # SetDefaults_Container
    ("containers", "terminationMessagePolicy"): "File",  # SetDefaults_Container
    ("initContainers", "terminationMessagePath"): "/dev/termination-log",
    ("initContainers", "terminationMessagePolicy"): "File",
}


def is_server_default(holder: str, field: str, value: Any) -> bool:
    if (holder, field) in SERVER_DEFAULTS and SERVER_DEFAULTS[(holder, field)] == value:
        return True
    return field in ZERO_OMITTED.get(holder, ()) and is_zero(value)


CONTROLLER_DATA_KEYS: dict[tuple[str, str], frozenset[str]] = {
    # Keys a controller writes into a Secret's data: the token controller fills a
    # `kubernetes.io/service-account-token` Secret (core/v1/types.go:8336-8349: ServiceAccountTokenKey
    # "token", ServiceAccountRootCAKey "ca.crt", ServiceAccountNamespaceKey "namespace").
    ("Secret", "kubernetes.io/service-account-token"): frozenset({"token", "ca.crt", "namespace"}),
}


def controller_data_keys(kind: str, body: dict[str, Any]) -> frozenset[str]:
    return CONTROLLER_DATA_KEYS.get((kind, str(body.get("type") or "")), frozenset())
