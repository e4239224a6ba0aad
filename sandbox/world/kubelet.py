"""The world's kubelets: run the pods bound to the world's nodes, as far as the API can see.

For each pod on one of the world's nodes the kubelet posts, after ``kubelet_delay``, the status a
real kubelet would: phase Running, host and pod IPs, startTime, containerStatuses and the
conditions PodReadyToStartContainers, Initialized, ContainersReady, Ready and PodScheduled.
``Ready`` also needs every ``spec.readinessGates`` condition to be True, and is re-evaluated on
every change of the pod. A container whose spec image differs from its reported image is
restarted in place: first reported not ready, then with the new image, a new imageID and
``restartCount + 1``. An image from a ``*.invalid`` registry never pulls: the container waits
with ``ErrImagePull`` and is not ready (a broken image, for rollouts that must stop). A pod
with a deletionTimestamp is deleted with ``gracePeriodSeconds=0`` after ``delete_delay``.

Decision (pure): ``NodeIpPool`` (host-local IPAM, one /24 per node, a returning pod name gets
its previous IP back), ``container_status``, ``pod_conditions``, ``desired_status`` and
``status_changes``. Shell: ``Kubelet``, one work queue fed by the shared pod reflector.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sandbox.world.client import ApiClient, ApiError, Conflict, NotFound, Reflector, WorkQueue
from sandbox.world.nodes import host_ip
from sandbox.world.scheduler import pod_path

log = logging.getLogger(__name__)

Obj = dict[str, Any]

OWN_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")
STATUS_FIELDS = (
    "phase",
    "conditions",
    "hostIP",
    "hostIPs",
    "podIP",
    "podIPs",
    "startTime",
    "initContainerStatuses",
    "containerStatuses",
    "qosClass",
)
_POOL_SIZE = 253  # .2 ... .254 of the node's /24


class NodeIpPool:
    """Host-local IPAM for one node: round-robin over ``10.244.<index+1>.2-254``.

    A pod key (``namespace/name``) that comes back to this node gets the address it had here
    before, when that address is free; otherwise the next free address after the last one
    handed out, as the host-local CNI plugin does. Past 253 live pods the pool overflows into
    ``10.<100+index>.x.y`` so that huge benchmarks still get unique addresses. Pure (no I/O).
    """

    def __init__(self, *, index: int) -> None:
        self.index = index
        self._size = _POOL_SIZE
        self._cursor = 0
        self._history: dict[str, str] = {}
        self._owner: dict[str, str] = {}  # ip -> uid
        self._by_uid: dict[str, str] = {}  # uid -> ip

    def address(self, slot: int) -> str:
        if slot < _POOL_SIZE:
            return f"10.244.{self.index + 1}.{slot + 2}"
        over = slot - _POOL_SIZE
        return f"10.{100 + self.index}.{over // 254}.{over % 254 + 1}"

    def _take(self, *, key: str, uid: str, ip: str) -> str:
        self._owner[ip] = uid
        self._by_uid[uid] = ip
        self._history[key] = ip
        return ip

    def observe(self, *, key: str, uid: str, ip: str) -> None:
        """Record an address a pod already reports (e.g. after a kubelet restart)."""
        if uid not in self._by_uid and ip not in self._owner:
            self._take(key=key, uid=uid, ip=ip)

    def allocate(self, *, key: str, uid: str) -> str:
        """The pod's address: its current one, its previous one here, or the next free."""
        if uid in self._by_uid:
            return self._by_uid[uid]
        previous = self._history.get(key)
        if previous is not None and previous not in self._owner:
            return self._take(key=key, uid=uid, ip=previous)
        if len(self._owner) >= self._size:
            self._size += 1
            return self._take(key=key, uid=uid, ip=self.address(self._size - 1))
        for step in range(self._size):
            slot = (self._cursor + step) % self._size
            ip = self.address(slot)
            if ip not in self._owner:
                self._cursor = slot + 1
                return self._take(key=key, uid=uid, ip=ip)
        raise AssertionError("unreachable: a free slot exists")

    def release(self, uid: str) -> None:
        """Free the address of a pod that is gone (its key keeps the address in history)."""
        ip = self._by_uid.pop(uid, None)
        if ip is not None:
            self._owner.pop(ip, None)


def unpullable(image: str) -> bool:
    """Images from a registry under the reserved ``.invalid`` domain (RFC 2606) never pull:
    the world's way to model a broken image (``registry.invalid/app:v2``). Pure."""
    registry = image.split("/", 1)[0] if "/" in image else ""
    return registry.split(":", 1)[0].endswith(".invalid")


def container_status(
    spec: Obj, current: Obj | None, *, restart_done: bool, uid: str, now: str
) -> Obj:
    """The status of one container. Pure.

    * not reported yet: running the spec image, ready;
    * reported with the spec image: kept, running and ready;
    * reported with another image, restart not done: the old image, not ready, not started;
    * reported with another image, restart done: the new image, ``restartCount + 1``, the old
      run recorded in ``lastState``.
    """
    name, image = str(spec["name"]), str(spec.get("image", ""))

    def running(restarts: int, started_at: str, last: Obj) -> Obj:
        return {
            "name": name,
            "state": {"running": {"startedAt": started_at}},
            "lastState": last,
            "ready": True,
            "restartCount": restarts,
            "image": image,
            "imageID": f"sandbox://{image}",
            "containerID": f"sandbox://{uid}/{name}/{restarts}",
            "started": True,
        }

    def cannot_pull(restarts: int, last: Obj) -> Obj:
        return {
            "name": name,
            "state": {
                "waiting": {
                    "reason": "ErrImagePull",
                    "message": f'failed to pull image "{image}": registry does not exist',
                }
            },
            "lastState": last,
            "ready": False,
            "restartCount": restarts,
            "image": image,
            "imageID": "",
            "started": False,
        }

    if current is None:
        return cannot_pull(0, {}) if unpullable(image) else running(0, now, {})
    restarts = int(current.get("restartCount", 0))
    if unpullable(image) and (current.get("image") == image or restart_done):
        return cannot_pull(restarts, current.get("lastState") or {})
    if current.get("image") == image:
        started_at = ((current.get("state") or {}).get("running") or {}).get("startedAt", now)
        return running(restarts, started_at, current.get("lastState") or {})
    if not restart_done:
        return {**current, "ready": False, "started": False}
    started_at = ((current.get("state") or {}).get("running") or {}).get("startedAt", now)
    last = {
        "terminated": {
            "exitCode": 0,
            "reason": "Completed",
            "startedAt": started_at,
            "finishedAt": now,
            "containerID": current.get("containerID", ""),
        }
    }
    return running(restarts + 1, now, last)


def _condition(kind: str, ok: bool, *, now: str, reason: str = "", message: str = "") -> Obj:
    cond: Obj = {
        "type": kind,
        "status": "True" if ok else "False",
        "lastProbeTime": None,
        "lastTransitionTime": now,
    }
    if not ok and reason:
        cond["reason"] = reason
        cond["message"] = message
    return cond


def readiness_gate_problem(pod: Obj) -> str | None:
    """Why the readiness gates hold Ready back, in the kubelet's words, or ``None``. Pure."""
    gates = (pod.get("spec") or {}).get("readinessGates") or []
    conds = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or []}
    for gate in gates:
        kind = gate.get("conditionType")
        cond = conds.get(kind)
        if cond is None:
            return f'corresponding condition of pod readiness gate "{kind}" does not exist.'
        if cond.get("status") != "True":
            return (
                f'the status of pod readiness gate "{kind}" is not "True", but {cond.get("status")}'
            )
    return None


def pod_conditions(pod: Obj, *, containers: list[Obj], now: str) -> list[Obj]:
    """The full conditions list: ours (in the kubelet's order), then everyone else's. Pure.

    lastTransitionTime is kept from the current list when a condition's status is unchanged.
    """
    unready = [c["name"] for c in containers if not c.get("ready")]
    containers_ok = not unready
    not_ready_msg = f"containers with unready status: [{' '.join(unready)}]"
    gate_problem = readiness_gate_problem(pod)
    ours = [
        _condition("PodReadyToStartContainers", True, now=now),
        _condition("Initialized", True, now=now),
        _condition(
            "ContainersReady",
            containers_ok,
            now=now,
            reason="ContainersNotReady",
            message=not_ready_msg,
        ),
    ]
    if not containers_ok:
        ready = _condition(
            "Ready", False, now=now, reason="ContainersNotReady", message=not_ready_msg
        )
    elif gate_problem is not None:
        ready = _condition(
            "Ready", False, now=now, reason="ReadinessGatesNotReady", message=gate_problem
        )
    else:
        ready = _condition("Ready", True, now=now)
    ours.append(ready)
    current = (pod.get("status") or {}).get("conditions") or []
    by_type = {c.get("type"): c for c in current}
    scheduled = by_type.get("PodScheduled")
    if scheduled is None or scheduled.get("status") != "True":
        scheduled = _condition("PodScheduled", True, now=now)
    ours.append(scheduled)
    for cond in ours:
        prev = by_type.get(cond["type"])
        if prev is not None and prev.get("status") == cond["status"]:
            cond["lastTransitionTime"] = prev.get("lastTransitionTime", now)
    mine = set(OWN_CONDITIONS) | {"PodScheduled"}
    return ours + [c for c in current if c.get("type") not in mine]


def desired_status(
    pod: Obj, *, host: str, pod_ip: str, restarts_done: frozenset[str], now: str
) -> Obj:
    """The status fields this kubelet owns for a running ``pod``. Pure."""
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    uid = str(pod["metadata"].get("uid", ""))
    reported = {c.get("name"): c for c in status.get("containerStatuses") or []}
    containers = [
        container_status(
            c, reported.get(c["name"]), restart_done=c["name"] in restarts_done, uid=uid, now=now
        )
        for c in spec.get("containers") or []
    ]
    out: Obj = {
        "phase": "Running",
        "conditions": pod_conditions(pod, containers=containers, now=now),
        "hostIP": host,
        "hostIPs": [{"ip": host}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": status.get("startTime") or now,
        "containerStatuses": containers,
        "qosClass": status.get("qosClass") or "BestEffort",
    }
    inits = spec.get("initContainers") or []
    if inits:
        done = {c.get("name"): c for c in status.get("initContainerStatuses") or []}
        out["initContainerStatuses"] = [
            done.get(c["name"])
            or {
                "name": c["name"],
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                "lastState": {},
                "ready": True,
                "restartCount": 0,
                "image": c.get("image", ""),
                "imageID": f"sandbox://{c.get('image', '')}",
                "containerID": f"sandbox://{uid}/{c['name']}/0",
                "started": False,
            }
            for c in inits
        ]
    return out


def status_changes(pod: Obj, desired: Obj) -> Obj | None:
    """The merge-patch ``status`` to send, or ``None`` when the pod already says it. Pure."""
    status = pod.get("status") or {}
    if all(status.get(k) == desired.get(k) for k in STATUS_FIELDS if k in desired):
        return None
    return desired


def images_differ(pod: Obj) -> list[str]:
    """Names of containers whose spec image differs from their reported image. Pure."""
    reported = {
        c.get("name"): c.get("image")
        for c in (pod.get("status") or {}).get("containerStatuses") or []
    }
    return [
        str(c["name"])
        for c in (pod.get("spec") or {}).get("containers") or []
        if c["name"] in reported and reported[c["name"]] != c.get("image")
    ]


class Kubelet:
    """The kubelets of all the world's nodes, fed by one shared pod reflector."""

    def __init__(
        self,
        *,
        client: ApiClient,
        pods: Reflector,
        node_names: list[str],
        clock: Callable[[], str],
        kubelet_delay: float = 0.0,
        delete_delay: float = 0.05,
        restart_delay: float = 0.1,
        workers: int = 8,
    ) -> None:
        self._client = client
        self._pods = pods
        self._nodes = {name: i for i, name in enumerate(node_names)}
        self._pools = {name: NodeIpPool(index=i) for name, i in self._nodes.items()}
        self._clock = clock
        self._kubelet_delay = kubelet_delay
        self._delete_delay = delete_delay
        self._restart_delay = restart_delay
        self._first_seen: dict[str, float] = {}  # uid -> monotonic time
        self._deleting_since: dict[str, float] = {}  # uid -> monotonic time
        self._restart_due: dict[tuple[str, str], float] = {}  # (uid, container) -> due
        self._queue = WorkQueue(process=self._sync, workers=workers)
        pods.subscribe(self._on_pod)

    def _on_pod(self, key: str, old: Obj | None, new: Obj | None) -> None:
        if new is None:
            if old is not None:
                self._forget(old)
            return
        node = (new.get("spec") or {}).get("nodeName")
        if node not in self._nodes:
            return
        ip = (new.get("status") or {}).get("podIP")
        if ip:
            self._pools[node].observe(key=key, uid=new["metadata"]["uid"], ip=ip)
        self._queue.add(key)

    def _forget(self, pod: Obj) -> None:
        uid = str(pod["metadata"].get("uid", ""))
        node = (pod.get("spec") or {}).get("nodeName")
        if node in self._pools:
            self._pools[node].release(uid)
        self._first_seen.pop(uid, None)
        self._deleting_since.pop(uid, None)
        for rk in [k for k in self._restart_due if k[0] == uid]:
            del self._restart_due[rk]

    async def _sync(self, key: str) -> None:
        pod = self._pods.cache.get(key)
        if pod is None:
            return
        node = (pod.get("spec") or {}).get("nodeName")
        if node not in self._nodes:
            return
        uid = str(pod["metadata"]["uid"])
        t = time.monotonic()
        if pod["metadata"].get("deletionTimestamp"):
            await self._finish_deletion(key, uid=uid, t=t)
            return
        seen = self._first_seen.setdefault(uid, t)
        if t < seen + self._kubelet_delay:
            self._queue.add_after(key, seen + self._kubelet_delay - t)
            return
        done: set[str] = set()
        for name in images_differ(pod):
            due = self._restart_due.setdefault((uid, name), t + self._restart_delay)
            if t >= due:
                done.add(name)
            else:
                self._queue.add_after(key, due - t)
        ip = self._pools[node].allocate(key=key, uid=uid)
        desired = desired_status(
            pod,
            host=host_ip(self._nodes[node]),
            pod_ip=ip,
            restarts_done=frozenset(done),
            now=self._clock(),
        )
        patch = status_changes(pod, desired)
        if patch is None:
            return
        body = {
            "metadata": {"resourceVersion": pod["metadata"]["resourceVersion"]},
            "status": patch,
        }
        try:
            await self._client.merge_patch(pod_path(key) + "/status", body)
        except Conflict:
            self._queue.add_after(key, 0.01)
            return
        except NotFound:
            return
        for name in done:
            self._restart_due.pop((uid, name), None)

    async def _finish_deletion(self, key: str, *, uid: str, t: float) -> None:
        since = self._deleting_since.setdefault(uid, t)
        if t < since + self._delete_delay:
            self._queue.add_after(key, since + self._delete_delay - t)
            return
        try:
            await self._client.delete(pod_path(key), grace_period_seconds=0, uid=uid)
        except (NotFound, Conflict):
            return
        except ApiError as e:
            log.debug("deleting %s: %s", key, e)
            self._queue.add_after(key, 0.2)

    def start(self) -> None:
        self._queue.start()

    async def stop(self) -> None:
        await self._queue.stop()
