"""Drift history in MongoDB: records (one per policy + resource) and events, written off the scan path."""

from kubedrift.store.mongo import DriftStore, StoreUnavailable
from kubedrift.store.queries import QueryError, RecordQuery

__all__ = ["DriftStore", "QueryError", "RecordQuery", "StoreUnavailable"]
