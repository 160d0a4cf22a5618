"""Property: the same quantity in any notation never drifts; a different one always does."""

from __future__ import annotations

import copy
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.support.objects import deployment, scan

BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
DECIMAL = {"k": 10**3, "M": 10**6, "G": 10**9}


def _cpu_notations(millis: int) -> list[object]:
    out: list[object] = [f"{millis}m"]
    if millis % 1000 == 0:
        out += [millis // 1000, str(millis // 1000), f"{millis // 1000}000m"]
    else:
        out.append(str(Decimal(millis) / 1000))
    if millis % 500 == 0 and millis % 1000:
        out.append(float(Decimal(millis) / 1000))
    return out


def _memory_notations(num_bytes: int) -> list[object]:
    out: list[object] = [num_bytes, str(num_bytes)]
    out += [f"{num_bytes // f}{s}" for s, f in {**BINARY, **DECIMAL}.items() if num_bytes % f == 0]
    return out


def _with_requests(cpu: object, memory: object) -> dict:
    body = deployment()
    body["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": cpu, "memory": memory},
    }
    return body


memory_values = st.one_of(
    st.builds(lambda n, u: n * BINARY[u], st.integers(1, 4096), st.sampled_from(sorted(BINARY))),
    st.builds(lambda n, u: n * DECIMAL[u], st.integers(1, 4096), st.sampled_from(sorted(DECIMAL))),
)


@settings(max_examples=150, deadline=None)
@given(millis=st.integers(1, 64_000), num_bytes=memory_values, data=st.data())
def test_equal_quantities_in_any_notation_never_drift(millis: int, num_bytes: int, data: st.DataObject) -> None:
    cpu_git, cpu_live = (
        data.draw(st.sampled_from(_cpu_notations(millis))),
        data.draw(st.sampled_from(_cpu_notations(millis))),
    )
    mem_git, mem_live = (
        data.draw(st.sampled_from(_memory_notations(num_bytes))),
        data.draw(st.sampled_from(_memory_notations(num_bytes))),
    )
    result = scan(_with_requests(cpu_git, mem_git), _with_requests(cpu_live, mem_live))
    assert result.drifts == [], (cpu_git, cpu_live, mem_git, mem_live)


@settings(max_examples=100, deadline=None)
@given(millis=st.integers(1, 64_000), delta=st.integers(1, 1000))
def test_different_quantities_always_drift(millis: int, delta: int) -> None:
    git = _with_requests(f"{millis}m", "1Gi")
    live = copy.deepcopy(git)
    for section in ("requests", "limits"):
        live["spec"]["template"]["spec"]["containers"][0]["resources"][section]["cpu"] = f"{millis + delta}m"
    drifts = scan(git, live).drifts
    assert len(drifts) == 1 and {c.category.value for c in drifts[0].changes} == {"ResourceChange"}
    assert len(drifts[0].changes) == 2
