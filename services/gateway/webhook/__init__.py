"""The gateway's admission webhooks: HTTPS AdmissionReview in, one RPC to the owning replica.

* ``reviews``: AdmissionReview types, ``parse_review`` and ``build_response``;
* ``paths``: ``WEBHOOK_PATHS``, what each path of deploy/webhooks.yaml accepts, and
  ``check_review``;
* ``forward``: ``AdmissionForwarder`` and ``ReplicaLink``, the hop to a service replica;
* ``server``: ``start_webhook_server``, the aiohttp HTTPS server.
"""

from services.gateway.webhook.forward import AdmissionForwarder, ReplicaLink, ReviewTimeout
from services.gateway.webhook.paths import WEBHOOK_PATHS, WebhookPath, check_review
from services.gateway.webhook.reviews import InvalidReview, build_response, parse_review
from services.gateway.webhook.server import WebhookServer, start_webhook_server

__all__ = [
    "AdmissionForwarder",
    "InvalidReview",
    "ReplicaLink",
    "ReviewTimeout",
    "WEBHOOK_PATHS",
    "WebhookPath",
    "WebhookServer",
    "build_response",
    "check_review",
    "parse_review",
    "start_webhook_server",
]
