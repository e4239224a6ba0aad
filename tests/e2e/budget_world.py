"""A Deployment world for the budget e2e tests, through the Kubernetes API only.

The test plays the Deployment and ReplicaSet controllers (the sandbox runs neither): it
creates a Deployment, a ReplicaSet it controls and pods the ReplicaSet controls, so the
budget service resolves pods → ReplicaSet → Deployment as for a real Deployment, and
nothing re-creates a pod once it is gone (so "exactly N admitted" is exact).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import orjson

from services.gateway.kube.client import KubeClient
from services.kit import errors
from tests.e2e.conftest import ensure_namespace, eventually

RELATED = "kruise.io/related-pub"


class World:
    def __init__(self, kube: KubeClient, namespace: str, app: str = "storm") -> None:
        self.kube = kube
        self.ns = namespace
        self.app = app

    @property
    def pods_path(self) -> str:
        return f"/api/v1/namespaces/{self.ns}/pods"

    @property
    def budget_path(self) -> str:
        return (
            f"/apis/policy.kruise.io/v1alpha1/namespaces/{self.ns}/podunavailablebudgets/{self.app}"
        )

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.kube.request_json("POST", path, body=orjson.dumps(body))

    async def build(self, replicas: int, *, max_unavailable: int | str) -> None:
        """A Deployment with ``replicas`` ready pods (through a ReplicaSet) and a budget."""
        await ensure_namespace(self.kube, self.ns)
        labels = {"app": self.app}
        template = {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]},
        }
        deployment = await self.post(
            f"/apis/apps/v1/namespaces/{self.ns}/deployments",
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": self.app},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": labels},
                    "template": template,
                },
            },
        )
        rs = await self.post(
            f"/apis/apps/v1/namespaces/{self.ns}/replicasets",
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": f"{self.app}-1",
                    "labels": labels,
                    "ownerReferences": [self._owner(deployment, "Deployment")],
                },
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": labels},
                    "template": template,
                },
            },
        )
        await self.post(
            f"/apis/policy.kruise.io/v1alpha1/namespaces/{self.ns}/podunavailablebudgets",
            {
                "apiVersion": "policy.kruise.io/v1alpha1",
                "kind": "PodUnavailableBudget",
                "metadata": {"name": self.app},
                "spec": {
                    "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.app},
                    "maxUnavailable": max_unavailable,
                },
            },
        )
        gate = asyncio.Semaphore(50)

        async def create(i: int) -> None:
            async with gate:
                await self.post(
                    self.pods_path,
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {
                            "name": f"{self.app}-{i}",
                            "labels": labels,
                            "ownerReferences": [self._owner(rs, "ReplicaSet")],
                        },
                        "spec": template["spec"],
                    },
                )

        await asyncio.gather(*(create(i) for i in range(replicas)))

        async def settled() -> bool:
            pods = (await self.kube.request_json("GET", self.pods_path))["items"]
            ready = [
                p
                for p in pods
                if _ready(p) and p["metadata"].get("annotations", {}).get(RELATED) == self.app
            ]
            return len(ready) == replicas

        await eventually(f"{replicas} ready pods related to {self.app}", settled, timeout=60)

    @staticmethod
    def _owner(obj: dict[str, Any], kind: str) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": kind,
            "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"],
            "controller": True,
        }

    async def status(self) -> dict[str, Any]:
        return (await self.kube.request_json("GET", self.budget_path)).get("status") or {}

    async def wait_status(self, **want: int) -> dict[str, Any]:
        async def check() -> bool:
            status = await self.status()
            return all(status.get(k) == v for k, v in want.items())

        await eventually(f"budget status {want}", check, timeout=30)
        return await self.status()

    async def evict(self, pod: str, *, dry_run: bool = False) -> int:
        body: dict[str, Any] = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": pod, "namespace": self.ns},
        }
        if dry_run:
            body["deleteOptions"] = {"dryRun": ["All"]}
        return await self._status_code("POST", f"{self.pods_path}/{pod}/eviction", body)

    async def delete(self, pod: str, *, dry_run: bool = False) -> int:
        query = "?dryRun=All" if dry_run else ""
        return await self._status_code("DELETE", f"{self.pods_path}/{pod}{query}", None)

    async def _status_code(self, method: str, path: str, body: dict[str, Any] | None) -> int:
        try:
            await self.kube.request(method, path, body=orjson.dumps(body) if body else None)
        except errors.TooManyRequests:
            return 429
        except errors.Forbidden:
            return 403
        except errors.NotFound:
            return 404
        except errors.Conflict:
            return 409
        return 201 if method == "POST" else 200


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


async def storm(world: World, pods: int) -> Counter[int]:
    """One request per pod, all at once: half evictions, half deletes, in random order."""
    names = [f"{world.app}-{i}" for i in range(pods)]
    random.Random(5).shuffle(names)
    gate = asyncio.Semaphore(250)

    async def one(i: int, pod: str) -> int:
        async with gate:
            return await (world.evict(pod) if i % 2 else world.delete(pod))

    return Counter(await asyncio.gather(*(one(i, p) for i, p in enumerate(names))))
