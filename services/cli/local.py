"""The whole mesh on this machine: sandbox (or a real cluster), gateway, services.

    async with LocalMesh(workdir=Path(".run"), replicas=2) as mesh:
        mesh.kubeconfig            # the cluster the gateway talks to
        mesh.replicas["budget"]    # ["127.0.0.1:port", ...]

Every component is a separate process (see ``procs``). With ``kubeconfig`` set
the sandbox is not started and the gateway runs against that cluster in local
mode: it installs the CRDs, registers the webhook configurations with a ``url:``
pointing at itself, and removes them on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from services.cli import procs

SERVICES = ("placement", "rollout", "budget")
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LocalMesh:
    workdir: Path
    replicas: dict[str, int] | int = 1
    kubeconfig: str | None = None
    world: bool = True
    review_mode: str = "stream"
    # The address the API server calls the webhooks at: 127.0.0.1 for the sandbox; for a
    # real cluster, an address of this machine that the cluster's API server can reach.
    webhook_host: str = "127.0.0.1"
    gateway_args: list[str] = field(default_factory=list)
    sandbox_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.procs: dict[str, procs.Proc] = {}
        self.addresses: dict[str, list[str]] = {}
        self.sandbox_url: str | None = None
        self.sandbox_token: str | None = None
        self.gateway_grpc = ""
        self.webhook_port = 0
        self.logs = self.workdir / "logs"
        self._external_kubeconfig = self.kubeconfig is not None

    def count(self, service: str) -> int:
        return self.replicas if isinstance(self.replicas, int) else self.replicas.get(service, 1)

    async def __aenter__(self) -> LocalMesh:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self._external_kubeconfig:
            await self.start_sandbox()
        gateway_port = procs.free_port()
        self.gateway_grpc = f"127.0.0.1:{gateway_port}"
        starts = []
        for service in SERVICES:
            ports = [procs.free_port() for _ in range(self.count(service))]
            self.addresses[service] = [f"127.0.0.1:{p}" for p in ports]
            for index, port in enumerate(ports):
                starts.append(self.start_replica(service, index, port))
        await asyncio.gather(*starts)
        await self.start_gateway(gateway_port)

    async def start_sandbox(self) -> None:
        state = self.workdir / "sandbox"
        args = ["--state-dir", str(state), "--crds", str(ROOT / "deploy" / "crds")]
        if self.world:
            args.append("--world")
        args.append("--admission")
        proc = await procs.start(
            "sandbox", "sandbox", [*args, *self.sandbox_args], log_dir=self.logs
        )
        self.procs["sandbox"] = proc
        self.kubeconfig = str(proc.ready["kubeconfig"])
        self.sandbox_url = str(proc.ready["url"])
        self.sandbox_token = proc.ready.get("token")

    async def start_replica(self, service: str, index: int, port: int) -> procs.Proc:
        name = f"{service}-{index}"
        proc = await procs.start(
            name,
            f"services.{service}",
            [
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--ops-port",
                "0",
                "--gateway",
                self.gateway_grpc,
                "--advertise",
                f"127.0.0.1:{port}",
            ],
            log_dir=self.logs,
        )
        self.procs[name] = proc
        return proc

    async def restart_replica(self, service: str, index: int, *, kill: bool = True) -> procs.Proc:
        name = f"{service}-{index}"
        old = self.procs[name]
        await (old.kill() if kill else old.stop())
        port = int(self.addresses[service][index].rsplit(":", 1)[1])
        return await self.start_replica(service, index, port)

    async def start_gateway(self, grpc_port: int) -> None:
        assert self.kubeconfig is not None
        self.webhook_port = self.webhook_port or procs.free_port()
        services = ";".join(f"{s}={','.join(a)}" for s, a in self.addresses.items())
        args = [
            "--kubeconfig",
            self.kubeconfig,
            "--host",
            "127.0.0.1" if self.webhook_host == "127.0.0.1" else "0.0.0.0",
            "--grpc-port",
            str(grpc_port),
            "--webhook-port",
            str(self.webhook_port),
            "--ops-port",
            "0",
            "--services",
            services,
            "--cert-dir",
            str(self.workdir / "gateway-certs"),
            "--local-webhooks",
            f"https://{self.webhook_host}:{self.webhook_port}",
            "--review-mode",
            self.review_mode,
            *self.gateway_args,
        ]
        if self._external_kubeconfig:
            args += ["--install-crds", str(ROOT / "deploy" / "crds")]
        self.procs["gateway"] = await procs.start(
            "gateway", "services.gateway", args, log_dir=self.logs, timeout=60
        )

    async def stop(self) -> None:
        # The gateway first, so it removes its webhook registrations while the API is up.
        order = ["gateway", *(n for n in self.procs if n not in ("gateway", "sandbox")), "sandbox"]
        for name in order:
            proc = self.procs.get(name)
            if proc is not None:
                with contextlib.suppress(Exception):
                    await proc.stop()
