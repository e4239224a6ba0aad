"""A small, fast Kubernetes REST client for the world's controllers.

The world's controllers (scheduler, kubelet, StatefulSet controller) are ordinary clients of any
Kubernetes API server, so they talk plain REST over HTTPS with a bearer token, using aiohttp and
orjson directly: kubernetes-asyncio models cost too much CPU at 100k pods.

Errors are turned into one typed tree here, at the boundary::

    ApiError            any answer with status >= 400 (``code``, ``reason``, Status ``body``)
    ├── NotFound        404
    ├── Conflict        409 (both Conflict and AlreadyExists; see ``reason``)
    └── Gone            410 (an expired resourceVersion: relist)

``Reflector`` is the list+watch loop: it keeps a cache of one resource kind, relists on 410 and
resumes from the last seen resourceVersion on a disconnect, and tells its subscribers about every
change as ``(key, old, new)`` with ``None`` for "absent".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Handler = Callable[[str, Obj | None, Obj | None], None]

MERGE_PATCH = "application/merge-patch+json"


class ApiError(Exception):
    """An error answer from the API server."""

    def __init__(self, *, code: int, body: Obj) -> None:
        self.code = code
        self.body = body
        self.reason = str(body.get("reason", ""))
        super().__init__(f"{code} {self.reason}: {body.get('message', '')}")


class NotFound(ApiError):
    """404: the object (or its namespace) does not exist."""


class Conflict(ApiError):
    """409: a stale resourceVersion, a failed precondition, or AlreadyExists."""


class Gone(ApiError):
    """410: the resourceVersion asked for is too old; list again."""


_ERRORS: dict[int, type[ApiError]] = {404: NotFound, 409: Conflict, 410: Gone}


def error_for(code: int, body: Obj) -> ApiError:
    """Build the typed error for an HTTP status ``code`` and its Status ``body``."""
    return _ERRORS.get(code, ApiError)(code=code, body=body)


def object_key(obj: Obj) -> str:
    """``namespace/name`` (or ``name`` for cluster-scoped objects), as client-go keys caches."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    name = str(meta.get("name", ""))
    return f"{ns}/{name}" if ns else name


class ApiClient:
    """HTTPS + bearer token client of a Kubernetes API server. Close it with ``close()``."""

    def __init__(self, *, api_url: str, token: str, ca_file: str) -> None:
        self.api_url = api_url.rstrip("/")
        self._token = token
        self._ssl = ssl.create_default_context(cafile=ca_file)
        self._session: aiohttp.ClientSession | None = None

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=64),
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Obj:
        """Send one request; return the decoded JSON answer or raise an ``ApiError``."""
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else None
        async with self._sess().request(
            method, self.api_url + path, params=params, data=data, headers=headers
        ) as resp:
            raw = await resp.read()
            try:
                decoded = orjson.loads(raw) if raw else {}
            except orjson.JSONDecodeError:
                decoded = {"message": raw.decode(errors="replace")}
            if resp.status >= 400:
                if not isinstance(decoded, dict):
                    decoded = {"message": str(decoded)}
                raise error_for(resp.status, decoded)
            return decoded if isinstance(decoded, dict) else {"value": decoded}

    async def get(self, path: str, *, params: dict[str, str] | None = None) -> Obj:
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: Obj) -> Obj:
        return await self.request("POST", path, body=body)

    async def merge_patch(self, path: str, body: Obj) -> Obj:
        return await self.request("PATCH", path, body=body, content_type=MERGE_PATCH)

    async def delete(
        self, path: str, *, grace_period_seconds: int | None = None, uid: str | None = None
    ) -> Obj:
        """DELETE with optional gracePeriodSeconds and a uid precondition."""
        opts: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            opts["gracePeriodSeconds"] = grace_period_seconds
        if uid is not None:
            opts["preconditions"] = {"uid": uid}
        return await self.request("DELETE", path, body=opts)

    async def watch_lines(self, path: str, *, params: dict[str, str]) -> aiohttp.ClientResponse:
        """Open a watch request; the caller reads and releases the response."""
        resp = await self._sess().get(
            self.api_url + path,
            params=params,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=None),
        )
        if resp.status >= 400:
            raw = await resp.read()
            resp.release()
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = {"message": raw.decode(errors="replace")}
            raise error_for(resp.status, body if isinstance(body, dict) else {})
        return resp


class Reflector:
    """List+watch one collection into an in-memory cache and fan changes out to subscribers.

    ``path`` is a collection path such as ``/api/v1/pods`` or ``/apis/apps/v1/statefulsets``.
    ``synced`` is set once the first list has been delivered.
    """

    def __init__(self, *, client: ApiClient, path: str, watch_timeout: int = 300) -> None:
        self.client = client
        self.path = path
        self.watch_timeout = watch_timeout
        self.cache: dict[str, Obj] = {}
        self.synced = asyncio.Event()
        self.lists = 0  # how many times the collection was (re)listed
        self._handlers: list[Handler] = []
        self._rv = ""

    def subscribe(self, handler: Handler) -> None:
        """Call ``handler(key, old, new)`` for every change, from the reflector's task."""
        self._handlers.append(handler)

    def _emit(self, key: str, old: Obj | None, new: Obj | None) -> None:
        for handler in self._handlers:
            try:
                handler(key, old, new)
            except Exception:  # a subscriber bug must not stop the watch
                log.exception("handler failed for %s %s", self.path, key)

    async def _list(self) -> None:
        listed = await self.client.get(self.path)
        self.lists += 1
        items = listed.get("items") or []
        fresh = {object_key(o): o for o in items}
        old_cache = self.cache
        self.cache = fresh
        self._rv = str((listed.get("metadata") or {}).get("resourceVersion", ""))
        for key, old in old_cache.items():
            if key not in fresh:
                self._emit(key, old, None)
        for key, obj in fresh.items():
            self._emit(key, old_cache.get(key), obj)
        self.synced.set()

    def _apply(self, event: Obj) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "ERROR":
            code = int(obj.get("code", 500))
            raise error_for(code, obj)
        if rv:
            self._rv = str(rv)
        if kind == "BOOKMARK":
            return
        key = object_key(obj)
        old = self.cache.get(key)
        if kind == "DELETED":
            self.cache.pop(key, None)
            self._emit(key, old, None)
        else:
            self.cache[key] = obj
            self._emit(key, old, obj)

    async def _watch(self) -> None:
        params = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "resourceVersion": self._rv,
            "timeoutSeconds": str(self.watch_timeout),
        }
        resp = await self.client.watch_lines(self.path, params=params)
        try:
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                while (nl := buf.find(b"\n")) >= 0:
                    line, buf = buf[:nl], buf[nl + 1 :]
                    if line.strip():
                        self._apply(orjson.loads(line))
        finally:
            resp.release()

    async def run(self) -> None:
        """List, then watch forever; relist on 410, resume after a disconnect."""
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Gone:
                need_list = True
            except (aiohttp.ClientError, ApiError, OSError, ValueError) as e:
                log.debug("watch %s interrupted: %s", self.path, e)
                await asyncio.sleep(0.2)


class WorkQueue:
    """A de-duplicating queue of keys served by a few worker tasks, with delayed re-adds.

    ``process(key)`` is awaited for each key; a key added while being processed is processed
    again afterwards. No task per key lives on: delays use ``loop.call_later``.
    """

    def __init__(self, *, process: Callable[[str], Any], workers: int = 4) -> None:
        self._process = process
        self._workers = workers
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._pending: set[str] = set()
        self._active: set[str] = set()
        self._dirty: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()

    def add(self, key: str) -> None:
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._pending:
            self._pending.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            self.add(key)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def start(self) -> None:
        for _ in range(self._workers):
            self._tasks.append(asyncio.create_task(self._work()))

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._pending.discard(key)
            self._active.add(key)
            try:
                await self._process(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("processing %s failed; retrying", key)
                self.add_after(key, 0.2)
            finally:
                self._active.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)

    async def stop(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
