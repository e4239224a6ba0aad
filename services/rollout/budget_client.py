"""Asking the budget service before updating a pod (SPEC 4.11): ``UpdateAuthorizer``.

The CloneSet controller asks before each pod update, in place or by re-creating the pod:

    authorizer = BudgetClient.connect(config.gateway)
    try:
        answer = await authorizer.authorize_update(
            namespace=ns, pod=pod.meta.name, pod_uid=pod.meta.uid, requester="rollout CloneSet web"
        )
    except errors.Unavailable:
        ...   # the budget service is down: stop the round, retry in 1 s (fail closed)
    if not answer.allowed:
        ...   # refused: stop the round, retry in 1 s; answer.message says why

The answer is ``BudgetService.AuthorizePodUpdate``'s: the same check and spend as the
budget's pod webhook for an UPDATE, so an allowed pod is recorded in its budget's
``unavailablePods`` and the webhook later admits the real update without spending again.
Asking again for the same pod spends nothing, so a retried ask is safe.

The call goes to the gateway (``config.gateway``, the cluster API's target), which routes
it to the budget replica owning the namespace: the rollout service does not know the
budget's ring. UNAVAILABLE is retried by the channel (the ask is idempotent, see above).

What the caller must do with each outcome:

    Authorization(allowed=True) ........ update the pod
    Authorization(allowed=False) ....... do not; stop the round, requeue after 1 s
    errors.Unavailable ................. the budget service (or the gateway) is down or
                                         did not answer within ``timeout``: treat it as a
                                         refusal, fail closed: stop the round, requeue
                                         after 1 s. Never update a pod unasked: an
                                         unprotected update could break a budget
    errors.FailedPrecondition .......... the pod was re-created under the same name: decide
                                         again on the new pod (the next round does)
    errors.NotFound .................... the pod is gone: nothing to update
    errors.Invalid ..................... a bug in the caller (namespace or pod missing)
    errors.MeshError (others) .......... as errors.Unavailable: fail closed
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import grpc

from kruise.budget.v1 import budget_pb2, budget_pb2_grpc
from services.kit import errors
from services.kit.rpc import mesh_channel
from services.kit.tls import MeshTls

if TYPE_CHECKING:
    from kruise.budget.v1.budget_pb2_grpc import BudgetServiceAsyncStub

SERVICE = "kruise.budget.v1.BudgetService"
IDEMPOTENT = [(SERVICE, "AuthorizePodUpdate")]


@dataclass(frozen=True, slots=True)
class Authorization:
    """The budget service's answer: may the pod be updated now?

    ``budget`` is the PodUnavailableBudget consulted ("" when none protects the pod);
    ``message`` says why an update was refused, in the webhook's words ("" when allowed).
    """

    allowed: bool
    budget: str = ""
    message: str = ""


class UpdateAuthorizer(Protocol):
    async def authorize_update(
        self, *, namespace: str, pod: str, pod_uid: str, requester: str
    ) -> Authorization: ...


class BudgetClient:
    """``UpdateAuthorizer`` over the gateway's routed ``BudgetService``."""

    def __init__(self, channel: grpc.aio.Channel, *, timeout: float = 5.0) -> None:
        self.channel = channel
        self.timeout = timeout
        self._stub: BudgetServiceAsyncStub = budget_pb2_grpc.BudgetServiceStub(channel)

    @classmethod
    def connect(
        cls, target: str, *, timeout: float = 5.0, tls: MeshTls | None = None
    ) -> BudgetClient:
        # Round robin, as the cluster client: a headless Service names every gateway replica.
        channel = mesh_channel(
            target, tls=tls, peer="gateway", idempotent=IDEMPOTENT, round_robin=True
        )
        return cls(channel, timeout=timeout)

    async def close(self) -> None:
        await self.channel.close()

    async def authorize_update(
        self, *, namespace: str, pod: str, pod_uid: str, requester: str
    ) -> Authorization:
        """Ask whether ``namespace/pod`` (uid ``pod_uid``; "" skips the check) may be updated.

        Raises the ``services.kit.errors`` tree (see the module docstring for what each
        means to the caller): ``Unavailable`` when the budget service is down or slower
        than ``timeout`` (UNAVAILABLE, DEADLINE_EXCEEDED).
        """
        request = budget_pb2.AuthorizePodUpdateRequest(
            namespace=namespace, pod=pod, pod_uid=pod_uid, requester=requester
        )
        try:
            answer = await self._stub.AuthorizePodUpdate(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as e:
            raise errors.from_rpc_error(e) from e
        return Authorization(allowed=answer.allowed, budget=answer.budget, message=answer.message)
