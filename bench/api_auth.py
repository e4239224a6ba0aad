"""API callers' authorization benchmark (issue 10's figure): the cost of authorizing an external
call with a warm cache and with a cold one.

    python -m bench.api_auth            # 3 repetitions, 3 s per variant and concurrency
    python -m bench.api_auth --quick    # 1 repetition, 1.5 s
    python -m bench api_auth --quick    # the same through the bench runner

Everything real on 127.0.0.1: ``LocalMesh(replicas=1)`` starts the sandbox (its TokenReview,
SubjectAccessReview and RBAC), one replica of each service and gateway 0; the bench starts two
more gateways beside it. All three route to the same rollout replica and differ only in how
they treat callers of their API port:

* ``off``: ``--api-auth off``: plain text, no checks (allowed on loopback only);
* ``warm``: ``--api-auth token``: TLS, the caller's TokenReview and SubjectAccessReview
  cached 10 s, so after the first call every call is two cache hits;
* ``cold``: ``--api-auth token --api-auth-cache-ttl 0``: TLS, every call a TokenReview and a
  SubjectAccessReview through the gateway's KubeClient (calls arriving while a review of the
  same key is in flight join it: with 16 in flight the ratio of reviews to calls shows it).

The caller: ServiceAccount ``bench-auth/caller`` with a Role granting ``get clonesets`` and a
RoleBinding (so the sandbox's SAR evaluates RBAC, not the superuser shortcut), its token from a
TokenRequest, sent as ``authorization: Bearer`` metadata with each call (none to ``off``).
One CloneSet of 2 pods; ``GetRolloutStatus`` for it in a closed loop (``common.run_bounded``)
with C calls in flight on one channel, ``--duration`` s after a 0.5 s warm-up, for C = 1
(the latency a lone tool sees) and C = 16 (throughput); the three variants in turn within a
repetition (the order rotates), ``--reps`` repetitions.

Reported per variant and C: calls/s, client latency p50/p99, gateway and API server (sandbox)
CPU per call (from ``/proc``, utime+stime of each process), TokenReviews per call (the gateway's
``kruise_mesh_gateway_api_auth_cache_total{cache="token",result="miss"}``), and the ratios to
``off`` taken within each repetition (then the median [min–max]). ``warm`` vs ``off`` also pays
TLS (on a long-lived connection: symmetric crypto only), which ``off`` does not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson

from bench import common
from kruise.rollout.v1 import rollout_pb2, rollout_pb2_grpc
from services.cli import procs
from services.cli.credentials import ApiCredentials, token_metadata
from services.cli.demo_rollout import clone_set
from services.cli.local import LocalMesh
from services.gateway.kube.client import KubeClient
from services.kit import errors

NAMESPACE = "bench-auth"
ACCOUNT = "caller"
NAME = "web"
VARIANTS = ("off", "warm", "cold")
TOKEN_MISSES = re.compile(
    rb'^kruise_mesh_gateway_api_auth_cache_total\{cache="token",result="miss"\} (\S+)$', re.M
)


def progress(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)


class BenchError(RuntimeError):
    pass


@dataclass
class Plan:
    reps: int
    duration: float
    concurrency: tuple[int, ...]
    cap: float = 60.0


@dataclass
class Gateway:
    """One gateway variant: its API port, its process, its ops port (metrics)."""

    variant: str
    target: str
    pid: int
    ops_port: int
    sandbox_pid: int
    channel: grpc.aio.Channel | None = None
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass
class Sample:
    rate: float
    p50: float
    p99: float
    cpu_per_call: float
    sandbox_cpu_per_call: float
    reviews_per_call: float
    calls: int
    errors: int = 0
    first_error: str = ""


@dataclass
class Rep:
    samples: dict[tuple[str, int], Sample] = field(default_factory=dict)


# ---- set-up ------------------------------------------------------------------------------------
async def post(kube: KubeClient, path: str, body: Mapping[str, Any]) -> None:
    with contextlib.suppress(errors.AlreadyExists):
        await kube.request("POST", path, body=orjson.dumps(body))


async def caller_token(kube: KubeClient) -> str:
    """ServiceAccount NAMESPACE/ACCOUNT allowed ``get clonesets`` by a Role, and its token."""
    await post(kube, "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
    await post(
        kube, f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts", {"metadata": {"name": ACCOUNT}}
    )
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}"
    rule = {"apiGroups": ["apps.kruise.io"], "resources": ["clonesets"], "verbs": ["get"]}
    await post(kube, f"{rbac}/roles", {"metadata": {"name": "read-clonesets"}, "rules": [rule]})
    await post(
        kube,
        f"{rbac}/rolebindings",
        {
            "metadata": {"name": "read-clonesets"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "read-clonesets",
            },
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}],
        },
    )
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600},
    }
    answer = await kube.request_json(
        "POST",
        f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{ACCOUNT}/token",
        body=orjson.dumps(request),
    )
    return str(answer["status"]["token"])


async def start_variant(mesh: LocalMesh, index: int, variant: str) -> procs.Proc:
    """Gateway ``index`` with the variant's flags (the mesh's own settings otherwise)."""
    saved_auth, saved_args = mesh.api_auth, list(mesh.gateway_args)
    mesh.api_auth = "off" if variant == "off" else "token"
    if variant == "cold":
        mesh.gateway_args = [*saved_args, "--api-auth-cache-ttl", "0"]
    try:
        proc = await mesh.start_gateway(procs.free_port(), index=index)
    finally:
        mesh.api_auth, mesh.gateway_args = saved_auth, saved_args
    return proc


async def token_misses(http: aiohttp.ClientSession, gateway: Gateway) -> float:
    async with http.get(f"http://127.0.0.1:{gateway.ops_port}/metrics") as response:
        text = await response.read()
    found = TOKEN_MISSES.search(text)
    return float(found.group(1)) if found else 0.0


# ---- measurement -------------------------------------------------------------------------------
async def measure(
    gateway: Gateway, http: aiohttp.ClientSession, concurrency: int, duration: float
) -> Sample:
    assert gateway.channel is not None
    stub = rollout_pb2_grpc.RolloutServiceStub(gateway.channel)
    request = rollout_pb2.GetRolloutStatusRequest(
        ref=rollout_pb2.WorkloadRef(namespace=NAMESPACE, name=NAME)
    )
    metadata = gateway.metadata or None

    async def call(_: int) -> None:
        await stub.GetRolloutStatus(request, metadata=metadata, timeout=10)

    await common.run_bounded(10**9, concurrency, call, time_cap=0.5)  # warm-up
    misses = await token_misses(http, gateway)
    cpu = common.proc_cpu_seconds(gateway.pid)
    api_server = common.proc_cpu_seconds(gateway.sandbox_pid)
    result = await common.run_bounded(10**9, concurrency, call, time_cap=duration)
    cpu = common.proc_cpu_seconds(gateway.pid) - cpu
    api_server = common.proc_cpu_seconds(gateway.sandbox_pid) - api_server
    reviews = await token_misses(http, gateway) - misses
    calls = max(result.ok, 1)
    return Sample(
        rate=result.rate,
        p50=common.percentile(result.latencies, 0.5),
        p99=common.percentile(result.latencies, 0.99),
        cpu_per_call=cpu / calls,
        sandbox_cpu_per_call=api_server / calls,
        reviews_per_call=reviews / calls,
        calls=result.ok,
        errors=result.errors,
        first_error=result.first_error,
    )


def print_results(reps: Sequence[Rep], plan: Plan) -> None:
    rows: list[list[str]] = []
    errors_seen: list[str] = []
    for concurrency in plan.concurrency:
        for variant in VARIANTS:
            samples = [r.samples[(variant, concurrency)] for r in reps]
            base = [r.samples[("off", concurrency)] for r in reps]
            rate_ratio = [s.rate / b.rate for s, b in zip(samples, base, strict=True) if b.rate]
            p50_ratio = [s.p50 / b.p50 for s, b in zip(samples, base, strict=True) if b.p50]
            rows.append(
                [
                    f"{variant}, {concurrency} in flight",
                    common.spread([s.rate for s in samples]),
                    "1" if variant == "off" else common.spread(rate_ratio, 2),
                    common.spread([s.p50 for s in samples], 2, 1000),
                    common.spread([s.p99 for s in samples], 2, 1000),
                    "1" if variant == "off" else common.spread(p50_ratio, 2),
                    common.spread([s.cpu_per_call for s in samples], 0, 1e6),
                    common.spread([s.sandbox_cpu_per_call for s in samples], 0, 1e6),
                    common.spread([s.reviews_per_call for s in samples], 2),
                ]
            )
            errors_seen += [
                f"{variant}/{concurrency}: {s.errors} errors, first {s.first_error}"
                for s in samples
                if s.errors
            ]
    common.print_table(
        "GetRolloutStatus through the gateway's API port: callers' auth off, on with a warm "
        "cache, on with a cold cache (TTL 0)",
        [
            "variant",
            "calls/s",
            "× off",
            "p50 ms",
            "p99 ms",
            "p50 × off",
            "gateway CPU µs/call",
            "API server CPU µs/call",
            "TokenReviews/call",
        ],
        rows,
        notes=[
            f"{plan.reps} repetition(s) of {plan.duration:g} s per variant and concurrency "
            "(after a 0.5 s warm-up), variants in rotating order; cells are median "
            "[min–max] over repetitions; ratios are taken within a repetition",
            "off = --api-auth off (plain text); warm = --api-auth token (TLS; reviews cached "
            "10 s); cold = --api-auth token --api-auth-cache-ttl 0 (TLS; a TokenReview and a "
            "SubjectAccessReview per call, unless joining one in flight)",
            "the caller is a ServiceAccount allowed get clonesets by a Role (RBAC evaluated by "
            "the sandbox's SAR); the sandbox, the 3 gateways, the rollout replica and this "
            "client share the machine's CPUs",
            *(errors_seen[:3] or ["no call failed"]),
        ],
    )


# ---- the driver --------------------------------------------------------------------------------
async def run(plan: Plan, workdir: Path) -> None:
    started = time.monotonic()
    mesh = LocalMesh(workdir=workdir, replicas=1, rollout_handover_s=0.0)
    async with mesh:
        progress(f"mesh up after {time.monotonic() - started:.1f} s")
        assert mesh.kubeconfig is not None
        kube = await KubeClient.connect(kubeconfig=mesh.kubeconfig)
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        gateways: dict[str, Gateway] = {}
        try:
            token = await caller_token(kube)
            body = clone_set(NAME, 2)
            body["metadata"]["namespace"] = NAMESPACE
            await post(
                kube, f"/apis/apps.kruise.io/v1alpha1/namespaces/{NAMESPACE}/clonesets", body
            )
            warm_proc = mesh.procs["gateway"]
            procs_by_variant = {
                "warm": warm_proc,
                "off": await start_variant(mesh, 1, "off"),
                "cold": await start_variant(mesh, 2, "cold"),
            }
            for index, variant in enumerate(("warm", "off", "cold")):
                proc = procs_by_variant[variant]
                target = f"127.0.0.1:{mesh.api_ports[index][0]}"
                if variant == "off":
                    creds = ApiCredentials(plaintext=True)
                    metadata: tuple[tuple[str, str], ...] = ()
                else:
                    creds = ApiCredentials(ca_file=mesh.api_ca_file)
                    metadata = token_metadata(token)
                gateways[variant] = Gateway(
                    variant=variant,
                    target=target,
                    pid=proc.pid,
                    ops_port=int(proc.ready["ops_port"]),
                    sandbox_pid=mesh.procs["sandbox"].pid,
                    channel=creds.channel(target),
                    metadata=metadata,
                )
            await wait_ready(gateways.values(), cap=plan.cap)
            progress("three gateways answer GetRolloutStatus for the caller")
            reps: list[Rep] = []
            for rep in range(plan.reps):
                order = VARIANTS[rep % 3 :] + VARIANTS[: rep % 3]
                current = Rep()
                for concurrency in plan.concurrency:
                    for variant in order:
                        sample = await measure(gateways[variant], http, concurrency, plan.duration)
                        current.samples[(variant, concurrency)] = sample
                        progress(
                            f"rep {rep + 1} {variant:>4} ×{concurrency:<2}: {sample.rate:,.0f} "
                            f"calls/s, p50 {sample.p50 * 1000:.2f} ms, "
                            f"{sample.reviews_per_call:.2f} TokenReviews/call"
                        )
                reps.append(current)
            print_results(reps, plan)
        finally:
            for gateway in gateways.values():
                if gateway.channel is not None:
                    await gateway.channel.close()
            await http.close()
            await kube.close()
    print(f"(took {time.monotonic() - started:.0f} s)", flush=True)


async def wait_ready(gateways: Any, *, cap: float) -> None:
    """Until every gateway answers GetRolloutStatus (the replica has the CloneSet)."""
    deadline = time.monotonic() + cap
    request = rollout_pb2.GetRolloutStatusRequest(
        ref=rollout_pb2.WorkloadRef(namespace=NAMESPACE, name=NAME)
    )
    for gateway in gateways:
        stub = rollout_pb2_grpc.RolloutServiceStub(gateway.channel)
        while True:
            try:
                await stub.GetRolloutStatus(request, metadata=gateway.metadata or None, timeout=5)
                break
            except grpc.aio.AioRpcError as e:
                if time.monotonic() > deadline:
                    problem = f"{gateway.variant} gateway: {e.code().name}: {e.details()}"
                    raise BenchError(problem) from e
                await asyncio.sleep(0.2)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.api_auth", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one repetition, shorter runs")
    parser.add_argument("--reps", type=int, help="repetitions (3; quick 1)")
    parser.add_argument(
        "--duration", type=float, help="s per variant and concurrency (3; quick 1.5)"
    )
    parser.add_argument(
        "--concurrency", default="1,16", help="calls in flight, comma-separated (1,16)"
    )
    parser.add_argument("--workdir", help="keep the mesh's state and logs here")
    args = parser.parse_args(argv)
    plan = Plan(
        reps=args.reps or (1 if args.quick else 3),
        duration=args.duration or (1.5 if args.quick else 3.0),
        concurrency=tuple(int(c) for c in args.concurrency.split(",")),
    )
    try:
        common.run_in_workdir(
            lambda workdir: run(plan, workdir),
            workdir=args.workdir,
            prefix="bench-api-auth-",
            timeout=600,
        )
    except (RuntimeError, ValueError, TimeoutError) as e:  # BenchError, StartError
        raise SystemExit(f"bench.api_auth failed: {e!r}") from None


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main(sys.argv[1:])
