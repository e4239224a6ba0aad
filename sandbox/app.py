"""``Sandbox``: the embedded API server as one async context manager.

    async with Sandbox(state_dir=tmp, crd_dirs=["deploy/crds"]) as sb:
        sb.url, sb.kubeconfig_path, sb.ca_file, sb.token
        token = await sb.issue_token("kruise-mesh", "kruise-mesh-gateway")

``sb.token`` is the admin's (``system:masters``: unrestricted). ``issue_token`` returns a
ServiceAccount token (creating the ServiceAccount if needed), as ``POST
/api/v1/namespaces/{ns}/serviceaccounts/{name}/token`` does over HTTP; requests made with it
are authorized by RBAC (``sandbox.auth``). ``service_account_kubeconfig`` writes a kubeconfig
holding such a token.

On entry it writes a CA and serving certificate into ``state_dir``, writes a kubeconfig
(bearer token, CA data), creates the boot namespaces (each, like every later one, with
ServiceAccount ``default`` and ConfigMap ``kube-root-ca.crt`` holding the CA), registers every
CustomResourceDefinition found in the YAML files of ``crd_dirs``, starts HTTPS on
127.0.0.1, then starts the optional world components. The optional admission dispatcher is
built by ``dispatcher_factory(store)`` (the store is its ``ObjectSource``).
"""

from __future__ import annotations

import base64
import secrets
import socket
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import yaml
from aiohttp import web

from sandbox.admission_types import Dispatcher, ObjectSource
from sandbox.api import ADMIN_USER, ApiCore, Ctx
from sandbox.auth import build_auth, install_bootstrap_policy
from sandbox.auth.tokens import Authenticated, TokenAuthority
from sandbox.errors import ApiError
from sandbox.resources import Registry
from sandbox.server import ServerOptions, build_app, close_watchers
from sandbox.store import DEFAULT_HISTORY, Store
from services.kit.certs import generate_ca, issue_serving_cert, write_pair

BOOT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class WorldComponent(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


WorldSpec = WorldComponent | Callable[["Sandbox"], WorldComponent]


def load_crd_documents(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition in the YAML files under ``paths`` (files or dirs)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml")))
        elif p.exists():
            files.append(p)
    out: list[dict[str, Any]] = []
    for f in files:
        for doc in yaml.safe_load_all(f.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                out.append(doc)
    return out


class Sandbox:
    """An in-process Kubernetes API server on 127.0.0.1 over HTTPS."""

    def __init__(
        self,
        *,
        state_dir: str | Path,
        port: int = 0,
        crd_dirs: Sequence[str | Path] = (),
        world: Sequence[WorldSpec] = (),
        dispatcher_factory: Callable[[ObjectSource], Dispatcher] | None = None,
        history_size: int = DEFAULT_HISTORY,
        bookmark_interval: float = 5.0,
        token: str | None = None,
        extra_tokens: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.port = port
        self.crd_dirs = list(crd_dirs)
        self._world_specs = list(world)
        self.world: list[WorldComponent] = []
        self._dispatcher_factory = dispatcher_factory
        self.token = token or secrets.token_urlsafe(24)
        self.registry = Registry()
        self.store = Store(registry=self.registry, history_size=history_size)
        self.core = ApiCore(store=self.store, registry=self.registry)
        self._tokens = {self.token: dict(ADMIN_USER), **(extra_tokens or {})}
        self.auth = build_auth(self.store, self._tokens)
        self._options = ServerOptions(bookmark_interval=bookmark_interval)
        self._runner: web.AppRunner | None = None
        self._app: web.Application | None = None
        self.url = ""
        self.ca_file = self.state_dir / "ca.crt"
        self.kubeconfig_path = self.state_dir / "kubeconfig"

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ca = generate_ca(common_name="kruise-mesh-sandbox-ca")
        serving = issue_serving_cert(ca=ca, hosts=["localhost", "kubernetes.default.svc"])
        self.ca_file, _ = write_pair(self.state_dir, "ca", ca)
        cert_file, key_file = write_pair(self.state_dir, "apiserver", serving)
        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_ctx.load_cert_chain(cert_file, key_file)

        self.core.root_ca_pem = ca.cert_pem.decode()
        for ns in BOOT_NAMESPACES:
            self.core.ensure_namespace(ns)
        install_bootstrap_policy(self.store)
        crd_rt = self.registry.get("apiextensions.k8s.io", "customresourcedefinitions")
        assert crd_rt is not None
        for doc in load_crd_documents(self.crd_dirs):
            try:
                await self.core.create(Ctx(), crd_rt, version="v1", namespace="", body=doc)
            except ApiError as e:
                if e.code != 409:
                    raise
        if self._dispatcher_factory is not None:
            self.core.dispatcher = self._dispatcher_factory(self.store)

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        self._options.server_address = f"127.0.0.1:{self.port}"
        self._app = build_app(
            core=self.core, tokens=self._tokens, options=self._options, auth=self.auth
        )
        self._runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.SockSite(self._runner, sock, ssl_context=ssl_ctx)
        await site.start()
        self.url = f"https://127.0.0.1:{self.port}"
        self._write_kubeconfig(ca.cert_pem)
        for spec in self._world_specs:
            comp: WorldComponent = spec(self) if callable(spec) else spec
            await comp.start()
            self.world.append(comp)

    async def stop(self) -> None:
        for comp in reversed(self.world):
            await comp.stop()
        self.world.clear()
        if self._app is not None:
            close_watchers(self._app)
        await self.core.aclose()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        close = getattr(self.core.dispatcher, "close", None)
        if close is not None:
            await close()

    def add_token(self, token: str, user: dict[str, Any], *, authorize: bool = False) -> None:
        """Accept another bearer token as ``user`` (a userInfo dict).

        Its requests are unrestricted unless ``authorize``: then RBAC decides them, as for a
        ServiceAccount token (give such a user ``system:authenticated`` for discovery).
        """
        self._tokens[token] = user
        if authorize:
            self.token_authority.restricted_static.add(token)
        else:
            self.token_authority.restricted_static.discard(token)

    @property
    def token_authority(self) -> TokenAuthority:
        """The issuer and authenticator of tokens (its ``clock`` may be moved in tests)."""
        return self.auth.tokens

    async def issue_token(
        self,
        namespace: str,
        name: str,
        *,
        audiences: Sequence[str] = (),
        expiration_seconds: int = 3600,
        create: bool = True,
    ) -> str:
        """A token of ServiceAccount ``namespace/name`` (created first if missing and
        ``create``), exactly as a TokenRequest by the admin gives it."""
        sa_rt = self.registry.get("", "serviceaccounts")
        assert sa_rt is not None
        if create and self.store.get(sa_rt.key, namespace, name) is None:
            self.core.ensure_namespace(namespace)
            await self.core.create(
                Ctx(),
                sa_rt,
                version="v1",
                namespace=namespace,
                body={"metadata": {"name": name, "namespace": namespace}},
            )
        admin = self.auth.tokens.authenticate(self.token)
        assert isinstance(admin, Authenticated)
        spec: dict[str, Any] = {"expirationSeconds": expiration_seconds}
        if audiences:
            spec["audiences"] = list(audiences)
        out = self.auth.token_request(admin, namespace=namespace, name=name, body={"spec": spec})
        return str(out["status"]["token"])

    async def service_account_kubeconfig(
        self, namespace: str, name: str, *, path: str | Path | None = None
    ) -> Path:
        """Write a kubeconfig that authenticates as ServiceAccount ``namespace/name``."""
        token = await self.issue_token(namespace, name, expiration_seconds=1 << 31)
        target = Path(path) if path else self.state_dir / f"kubeconfig-{namespace}-{name}"
        self._write_kubeconfig(self.ca_file.read_bytes(), token=token, path=target, user=name)
        return target

    def _write_kubeconfig(
        self,
        ca_pem: bytes,
        *,
        token: str | None = None,
        path: Path | None = None,
        user: str = "sandbox-admin",
    ) -> None:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "sandbox",
                    "cluster": {
                        "server": self.url,
                        "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": token or self.token}}],
            "contexts": [
                {
                    "name": "sandbox",
                    "context": {
                        "cluster": "sandbox",
                        "user": user,
                        "namespace": "default",
                    },
                }
            ],
            "current-context": "sandbox",
        }
        target = path or self.kubeconfig_path
        target.write_text(yaml.safe_dump(cfg, sort_keys=False))
        target.chmod(0o600)
