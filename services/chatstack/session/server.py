"""Entry point of the standalone session service: `python -m chatstack.session`."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from chatstack.catalog import SESSION
from chatstack.core.errors import BackendUnavailable
from chatstack.core.metrics import MetricFactory
from chatstack.core.server import ServiceSpec, run_service, servicer_spec
from chatstack.session.config import SessionConfig
from chatstack.session.metrics import SessionMetrics
from chatstack.session.preference_store import PreferenceStore
from chatstack.session.servicer import SessionServicer
from chatstack.session.store import RedisSessionStore
from chatstack.v1 import session_pb2_grpc

SERVICE_NAME = SESSION.proto_service
log = logging.getLogger(__name__)


def build_spec(config: SessionConfig, registry: CollectorRegistry | MetricFactory) -> ServiceSpec:
    """The session service's spec: SERVING once Redis answers a PING."""
    metrics = SessionMetrics(registry)
    store = RedisSessionStore(config, metrics)

    async def start() -> None:
        while True:  # wait for Redis; health stays NOT_SERVING meanwhile
            try:
                await store.ping()
                return
            except BackendUnavailable as exc:
                log.warning("waiting for redis at %s: %s", config.redis_url, exc)
                await asyncio.sleep(1.0)

    return servicer_spec(SERVICE_NAME, SessionServicer(store, PreferenceStore(store, metrics)),
                         session_pb2_grpc.add_SessionServiceServicer_to_server, start=start, stop=store.close)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the session service until SIGTERM."""
    config = SessionConfig.load(sys.argv[1:] if argv is None else argv)
    return run_service(config, build_spec)


if __name__ == "__main__":
    sys.exit(main())
