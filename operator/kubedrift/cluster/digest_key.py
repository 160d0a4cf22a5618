"""The installation's digest key (kubedrift.digest), kept in a Secret of the operator's namespace.

Created with a random key on first start; every later start (and every replica) reads the same one,
so digests of one value stay equal across restarts. Needs get on that Secret and create on secrets
in the operator's namespace (deploy/rbac.yaml), nothing more.
"""

from __future__ import annotations

import base64
import binascii

from kubedrift.cluster.client import ApiError, KubeClient, resource_path
from kubedrift.digest import MIN_KEY_BYTES, DigestKeyError, new_key

SECRET_NAME = "kubedrift-digest-key"
KEY_FIELD = "key"


def load_or_create(client: KubeClient, namespace: str, name: str = SECRET_NAME) -> bytes:
    """The key stored in Secret `namespace/name`, created first if it does not exist yet."""
    path = resource_path("", "v1", "secrets", namespace, name)
    try:
        return _key_of(client.get(path), namespace, name)
    except ApiError as exc:
        if not exc.not_found:
            raise
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": "kubedrift", "app.kubernetes.io/component": "digest-key"}},
        "type": "Opaque",
        "data": {KEY_FIELD: base64.b64encode(new_key()).decode()},
    }
    try:
        created = client.request("POST", resource_path("", "v1", "secrets", namespace), body=body)
    except ApiError as exc:
        if not exc.conflict:
            raise
        created = client.get(path)  # another replica created it first: use theirs
    return _key_of(created, namespace, name)


def _key_of(secret: object, namespace: str, name: str) -> bytes:
    data = secret.get("data") if isinstance(secret, dict) else None
    encoded = data.get(KEY_FIELD) if isinstance(data, dict) else None
    try:
        key = base64.b64decode(str(encoded or ""), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) < MIN_KEY_BYTES:
        raise DigestKeyError(f"Secret {namespace}/{name} has no usable `{KEY_FIELD}` "
                             f"(at least {MIN_KEY_BYTES} bytes, base64)")
    return key
