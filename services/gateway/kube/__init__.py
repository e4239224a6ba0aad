"""The gateway's Kubernetes adapters: the only package that imports kubernetes_asyncio.

``client.KubeClient`` speaks raw JSON over the REST API (discovery, requests, watches);
everything else in the gateway is written against it.
"""

from services.gateway.kube.client import KubeClient, Resource

__all__ = ["KubeClient", "Resource"]
