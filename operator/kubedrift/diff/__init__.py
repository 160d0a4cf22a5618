"""normalize -> compare (deepdiff) -> classify/score. Usable with no cluster and no database."""

from kubedrift.diff.compare import compare_objects

__all__ = ["compare_objects"]
