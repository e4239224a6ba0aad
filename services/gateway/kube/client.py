"""A raw-JSON Kubernetes client: discovery, requests and watches, bytes in and bytes out.

kubernetes-asyncio supplies the configuration (kubeconfig or in-cluster service
account), authentication (bearer tokens with their refresh hooks, client certificates)
and the transport (its aiohttp session with the cluster's TLS context). We never build
its model objects (38-53x slower than dicts, PERFORMANCE.md 2.3).

Why requests do not go through ``ApiClient.call_api``: its REST layer ``json.dumps`` any
body whose Content-Type contains "json", so raw bytes (a merge patch, a JSON patch, a
strategic patch) cannot be passed through as they are, and a decoded body would be
re-serialised. So each request takes the auth headers from
``ApiClient.update_params_for_auth`` (which runs the token refresh hook) and is sent over
the connector kubernetes-asyncio built for the cluster (its TLS context, its pool size).
The Content-Type is always ours (ECOSYSTEM.md 3: the generated client picks json-patch for
dict bodies on custom objects).

The session on that connector is ours, without ``trust_env``: kubernetes-asyncio's looks up
``~/.netrc`` and the proxy variables on every request, two hops through a thread each,
which cost the gateway's status writes more than the HTTP itself under load. The proxy
variables (``HTTPS_PROXY``, ``NO_PROXY``) are read once, when the client connects; an
explicit ``proxy`` in the configuration wins.

Errors (services/kit/errors.py)::

    non-2xx answer          from_http(status, Status.message, reason=Status.reason)
    connect error, timeout  Unavailable
    watch silent too long   Unavailable  (the inactivity watchdog)
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import urllib.request
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import orjson
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from services.gateway.kube.discovery import (
    Catalog,
    GroupVersions,
    Resource,
    parse_aggregated,
    parse_group_list,
    parse_resource_list,
    split_api_version,
)
from services.kit import errors

__all__ = ["KubeClient", "Resource"]

log = logging.getLogger(__name__)

_AGGREGATED_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
)


def error_from_response(status: int, body: bytes) -> errors.MeshError:
    """The mesh error for a non-2xx answer, from its ``Status`` body when there is one."""
    message, reason = "", ""
    try:
        doc = orjson.loads(body) if body else {}
        if isinstance(doc, dict):
            message = str(doc.get("message") or "")
            reason = str(doc.get("reason") or "")
    except orjson.JSONDecodeError:
        message = body[:200].decode("utf-8", "replace")
    return errors.from_http(status, message or f"HTTP {status}", reason=reason)


def env_proxy_for(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY`` and ``NO_PROXY``), if any."""
    parts = urlsplit(url)
    if not parts.hostname or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme or "https")


class KubeClient:
    """One connection to one API server. Create with ``await KubeClient.connect(...)``."""

    def __init__(self, api: k8s_client.ApiClient) -> None:
        self._api = api
        self._config: k8s_client.Configuration = api.configuration
        shared: aiohttp.ClientSession = api.rest_client.pool_manager
        self._session = aiohttp.ClientSession(
            connector=shared.connector,
            connector_owner=False,  # closed with the ApiClient
            trust_env=False,
            read_bufsize=2**21,  # watch events of big objects, as kubernetes-asyncio sets
        )
        self._proxy = self._config.proxy or env_proxy_for(str(self._config.host))
        self._catalog: Catalog | None = None
        self._catalog_generation = 0
        self._discovery_lock = asyncio.Lock()

    @classmethod
    async def connect(
        cls, *, kubeconfig: str | None = None, context: str | None = None
    ) -> KubeClient:
        """Load a kubeconfig file, or the in-cluster service account when ``kubeconfig`` is None."""
        cfg = k8s_client.Configuration()
        if kubeconfig is not None and not os.path.isfile(kubeconfig):
            raise errors.FailedPrecondition(f"kubeconfig {kubeconfig} does not exist")
        try:
            if kubeconfig is None:
                k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            else:
                await k8s_config.load_kube_config(
                    config_file=kubeconfig,
                    context=context,
                    client_configuration=cfg,
                    persist_config=False,
                )
        except k8s_config.ConfigException as e:
            raise errors.FailedPrecondition(f"cannot load Kubernetes config: {e}") from e
        return cls(k8s_client.ApiClient(cfg))

    async def close(self) -> None:
        await self._session.close()
        await self._api.close()

    # -- discovery ---------------------------------------------------------------------------

    async def resolve(self, *, api_version: str, kind: str) -> Resource:
        """The REST resource serving ``kind`` at ``api_version``; NotFound if none does."""
        group, version = split_api_version(api_version)
        key = (group, version, kind)

        def lookup(c: Catalog) -> Resource | None:
            return c.by_kind.get(key)

        return await self._find(lookup, what=f"kind {kind} in {api_version}")

    async def resolve_resource(self, *, group: str, resource: str) -> Resource:
        """The preferred version of ``resource`` in ``group``; NotFound if unknown."""
        key = (group, resource)

        def lookup(c: Catalog) -> Resource | None:
            return c.by_resource.get(key)

        return await self._find(lookup, what=f"resource {resource}.{group or 'core'}")

    async def _find(self, lookup: Any, *, what: str) -> Resource:
        generation = self._catalog_generation
        if self._catalog is not None:
            found: Resource | None = lookup(self._catalog)
            if found is not None:
                return found
        # A miss: discovery may be stale (a CRD appeared); refresh once, coalescing
        # with any refresh that started after our look.
        async with self._discovery_lock:
            if self._catalog is None or self._catalog_generation == generation:
                self._catalog = await self._discover()
                self._catalog_generation += 1
            catalog = self._catalog
        found = lookup(catalog)
        if found is None:
            raise errors.NotFound(f"the API server does not serve {what}")
        return found

    async def invalidate_discovery(self) -> None:
        """Forget discovery; the next lookup fetches it again."""
        async with self._discovery_lock:
            self._catalog = None
            self._catalog_generation += 1

    async def _discover(self) -> Catalog:
        headers = {"Accept": _AGGREGATED_ACCEPT}
        groups: list[GroupVersions] = []
        resources: list[Resource] = []
        legacy: list[tuple[str, str]] = []
        for root in ("/api", "/apis"):
            doc = orjson.loads(await self._request("GET", root, headers=headers))
            if doc.get("kind") == "APIGroupDiscoveryList":
                g, r = parse_aggregated(doc)
                groups += g
                resources += r
            else:
                for gv in parse_group_list(doc):
                    groups.append(gv)
                    legacy += [(gv.group, v) for v in gv.versions]

        async def one(group: str, version: str) -> list[Resource]:
            path = f"/apis/{group}/{version}" if group else f"/api/{version}"
            try:
                doc = await self.request_json("GET", path)
            except errors.MeshError as e:  # an unavailable aggregated API must not stop us
                log.warning("discovery of %s failed: %s", path, e)
                return []
            return parse_resource_list(group=group, version=version, doc=doc)

        for found in await asyncio.gather(*(one(g, v) for g, v in legacy)):
            resources += found
        return Catalog.build(groups, resources)

    # -- requests ----------------------------------------------------------------------------

    def path(
        self,
        res: Resource,
        *,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> str:
        """The REST path of a collection, an object or an object's subresource."""
        parts = ["/api", res.version] if not res.group else ["/apis", res.group, res.version]
        if res.namespaced and namespace:
            parts += ["namespaces", quote(namespace, safe="")]
        parts.append(res.resource)
        if name:
            parts.append(quote(name, safe=""))
            if subresource:
                parts.append(subresource)
        return "/".join(parts)

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
        timeout: float = 10.0,
    ) -> bytes:
        """Send one request; the raw response body, or the mesh error for a non-2xx answer."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        return await self._request(
            method, path, query=query, body=body, headers=headers, timeout=timeout
        )

    async def request_json(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        """``request`` with the answer decoded (orjson)."""
        doc = orjson.loads(await self.request(method, path, **kw))
        if not isinstance(doc, dict):
            raise errors.MeshError(f"{method} {path}: expected a JSON object")
        return doc

    async def _headers(self, extra: Mapping[str, str]) -> dict[str, str]:
        headers = dict(self._api.default_headers)
        headers.update(extra)
        queries: list[tuple[str, str]] = []
        await self._api.update_params_for_auth(headers, queries, ["BearerToken"])
        return headers

    def _url(self, path: str, query: Mapping[str, str] | None) -> str:
        url = str(self._config.host).rstrip("/") + path
        if query:
            url += "?" + urlencode(dict(query))
        return url

    def _session_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if self._proxy:
            args["proxy"] = self._proxy
        if self._config.proxy_headers:
            args["proxy_headers"] = self._config.proxy_headers
        if getattr(self._config, "tls_server_name", None):
            args["server_hostname"] = self._config.tls_server_name
        return args

    async def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str],
        timeout: float = 10.0,
    ) -> bytes:
        url = self._url(path, query)
        try:
            async with self._session.request(
                method,
                url,
                data=body,
                headers=await self._headers(headers),
                timeout=aiohttp.ClientTimeout(total=timeout),
                **self._session_args(),
            ) as resp:
                data = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise errors.Unavailable(f"{method} {path}: {type(e).__name__}: {e}") from e
        if not 200 <= status <= 299:
            raise error_from_response(status, data)
        return data

    # -- watches -----------------------------------------------------------------------------

    async def watch_lines(
        self, path: str, *, query: Mapping[str, str], read_timeout: float
    ) -> AsyncIterator[bytes]:
        """An open watch: each raw JSON line (one event) as it arrives.

        Ends when the server closes the stream. Raises Unavailable on a connect error or
        when nothing at all (event or bookmark) arrives for ``read_timeout`` seconds; a
        non-2xx answer raises its mesh error (410 Gone → Conflict: relist).
        """
        q = dict(query)
        q["watch"] = "true"
        url = self._url(path, q)
        try:
            resp = await self._session.request(
                "GET",
                url,
                headers=await self._headers({"Accept": "application/json"}),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10.0),
                **self._session_args(),
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise errors.Unavailable(f"watch {path}: {type(e).__name__}: {e}") from e
        try:
            if not 200 <= resp.status <= 299:
                raise error_from_response(resp.status, await resp.read())
            pending = b""
            while True:
                started = time.monotonic()
                try:
                    async with asyncio.timeout(read_timeout):
                        chunk = await resp.content.readany()
                except TimeoutError as e:
                    raise errors.Unavailable(
                        f"watch {path}: no event or bookmark for {time.monotonic() - started:.1f} s"
                    ) from e
                except (aiohttp.ClientError, OSError) as e:
                    raise errors.Unavailable(f"watch {path}: {type(e).__name__}: {e}") from e
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield line
            if pending.strip():
                yield pending
        finally:
            resp.close()
