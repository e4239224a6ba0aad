"""Unit tests for the world kubelet's pure decisions: IPAM, container status, conditions."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.world.kubelet import (
    NodeIpPool,
    container_status,
    desired_status,
    images_differ,
    readiness_gate_problem,
    status_changes,
)

T0, T1 = "2026-11-26T04:13:26Z", "2026-11-26T04:14:00Z"


def pod(*, image: str = "nginx:1.27", gates: tuple[str, ...] = (), status: Any = None) -> Any:
    spec: dict[str, Any] = {"nodeName": "node-a1", "containers": [{"name": "c", "image": image}]}
    if gates:
        spec["readinessGates"] = [{"conditionType": g} for g in gates]
    return {
        "metadata": {"name": "web-0", "namespace": "ns", "uid": "uid-1", "resourceVersion": "1"},
        "spec": spec,
        "status": status or {"phase": "Pending"},
    }


def conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def run(p: Any, *, now: str = T0, done: frozenset[str] = frozenset()) -> Any:
    """One kubelet round: the pod as it reads after the status patch."""
    status = desired_status(p, host="127.0.1.1", pod_ip="10.244.1.2", restarts_done=done, now=now)
    return {**p, "status": {**p["status"], **status}}


# --- IPAM ----------------------------------------------------------------------------------


def test_pool_hands_out_addresses_round_robin():
    pool = NodeIpPool(index=0)
    assert pool.allocate(key="ns/a", uid="1") == "10.244.1.2"
    assert pool.allocate(key="ns/b", uid="2") == "10.244.1.3"
    assert pool.allocate(key="ns/a", uid="1") == "10.244.1.2", "same pod, same address"
    pool.release("1")
    assert pool.allocate(key="ns/c", uid="3") == "10.244.1.4", "next after the last, not lowest"


def test_returning_pod_name_gets_its_previous_address_back():
    pool = NodeIpPool(index=2)
    first = pool.allocate(key="ns/web-0", uid="old")
    pool.allocate(key="ns/other", uid="x")
    pool.release("old")
    assert pool.allocate(key="ns/web-0", uid="new") == first == "10.244.3.2"


def test_previous_address_taken_by_another_pod_gives_the_next_free():
    pool = NodeIpPool(index=0)
    pool.observe(key="ns/web-0", uid="old", ip="10.244.1.9")
    pool.release("old")
    pool.observe(key="ns/squatter", uid="s", ip="10.244.1.9")
    assert pool.allocate(key="ns/web-0", uid="new") == "10.244.1.2"


def test_pool_overflows_past_253_live_pods_with_unique_addresses():
    pool = NodeIpPool(index=0)
    ips = {pool.allocate(key=f"ns/p{i}", uid=str(i)) for i in range(300)}
    assert len(ips) == 300
    assert "10.244.1.254" in ips and "10.100.0.1" in ips


# --- containers ------------------------------------------------------------------------------

SPEC = {"name": "c", "image": "nginx:1.28"}


@pytest.mark.parametrize(
    ("current", "done", "expected"),
    [
        pytest.param(
            None,
            False,
            {"image": "nginx:1.28", "ready": True, "restartCount": 0, "started": True},
            id="new container runs the spec image",
        ),
        pytest.param(
            {"name": "c", "image": "nginx:1.27", "restartCount": 0, "ready": True},
            False,
            {"image": "nginx:1.27", "ready": False, "restartCount": 0, "started": False},
            id="in-place update (step 1/2): old image, not ready",
        ),
        pytest.param(
            {"name": "c", "image": "nginx:1.27", "restartCount": 0, "ready": False},
            True,
            {
                "image": "nginx:1.28",
                "imageID": "sandbox://nginx:1.28",
                "ready": True,
                "restartCount": 1,
                "containerID": "sandbox://u/c/1",
            },
            id="in-place update (step 2/2): new image, restartCount+1, ready",
        ),
    ],
)
def test_container_status(current: Any, done: bool, expected: dict[str, Any]):
    got = container_status(SPEC, current, restart_done=done, uid="u", now=T1)
    assert {k: got[k] for k in expected} == expected


# --- pod status -----------------------------------------------------------------------------


def test_first_status_is_running_and_ready_like_a_real_kubelet():
    after = run(pod())
    status = after["status"]
    assert status["phase"] == "Running"
    assert [c["type"] for c in status["conditions"]] == [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
        "PodScheduled",
    ]
    assert set(conditions(status).values()) == {"True"}
    assert status["hostIPs"] == [{"ip": "127.0.1.1"}]
    assert status["podIPs"] == [{"ip": "10.244.1.2"}]
    assert status["containerStatuses"][0]["imageID"] == "sandbox://nginx:1.27"
    assert (
        status_changes(
            after,
            desired_status(
                after, host="127.0.1.1", pod_ip="10.244.1.2", restarts_done=frozenset(), now=T1
            ),
        )
        is None
    ), "a second round at a later time changes nothing"


@pytest.mark.parametrize(
    ("gate_status", "ready", "problem"),
    [
        pytest.param(None, "False", 'readiness gate "g" does not exist', id="gate missing"),
        pytest.param("False", "False", 'is not "True", but False', id="gate False"),
        pytest.param("True", "True", None, id="gate True"),
    ],
)
def test_readiness_gate_holds_ready(gate_status: str | None, ready: str, problem: str | None):
    base = run(pod(gates=("g",)))
    if gate_status is not None:
        base["status"]["conditions"].append({"type": "g", "status": gate_status})
    after = run(base, now=T1)
    conds = conditions(after["status"])
    assert conds["Ready"] == ready and conds["ContainersReady"] == "True"
    found = readiness_gate_problem(after)
    assert (found is None) if problem is None else (problem in str(found))
    assert conds.get("g") == gate_status, "the gate condition itself is kept in the full list"


def test_ready_keeps_transition_time_until_it_flips():
    ready0 = run(pod(gates=("g",)))
    ready0["status"]["conditions"].append({"type": "g", "status": "True"})
    ready1 = run(ready0, now=T1)
    by_type = {c["type"]: c for c in ready1["status"]["conditions"]}
    assert by_type["Ready"]["lastTransitionTime"] == T1, "False -> True is a transition"
    assert by_type["Initialized"]["lastTransitionTime"] == T0, "unchanged keeps its time"


def test_in_place_image_change_goes_not_ready_then_reports_new_image():
    running = run(pod())
    updated = {**running, "spec": {**running["spec"], "containers": [SPEC]}}
    assert images_differ(updated) == ["c"]
    step1 = run(updated, now=T1)
    assert conditions(step1["status"])["Ready"] == "False"
    assert step1["status"]["containerStatuses"][0]["image"] == "nginx:1.27"
    step2 = run(step1, now=T1, done=frozenset({"c"}))
    cs = step2["status"]["containerStatuses"][0]
    assert (cs["image"], cs["restartCount"], cs["ready"]) == ("nginx:1.28", 1, True)
    assert conditions(step2["status"])["Ready"] == "True"
    assert images_differ(step2) == []


def test_an_image_from_an_invalid_registry_never_pulls():
    from sandbox.world.kubelet import unpullable

    assert unpullable("registry.invalid/app:v2") and unpullable("x.invalid:5000/app")
    assert not unpullable("nginx:1.27") and not unpullable("docker.io/library/nginx")
    broken = {"name": "main", "image": "registry.invalid/app:v2"}
    fresh = container_status(broken, None, restart_done=False, uid="u", now=T1)
    assert fresh["ready"] is False and fresh["state"]["waiting"]["reason"] == "ErrImagePull"
    running = container_status(SPEC, None, restart_done=False, uid="u", now=T1)
    during = container_status(broken, running, restart_done=False, uid="u", now=T1)
    assert during["ready"] is False and during["image"] == running["image"]
    after = container_status(broken, running, restart_done=True, uid="u", now=T1)
    assert after["state"]["waiting"]["reason"] == "ErrImagePull" and not after["ready"]
