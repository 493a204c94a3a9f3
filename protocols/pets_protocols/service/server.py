"""Run the service under uvicorn on a socket bound first, so port 0 gives a free port."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import uvicorn

from pets.errors import ServiceError, ServiceUnavailableError
from pets_protocols.service.app import create_app
from pets_protocols.service.config import ServiceConfig
from pets_protocols.service.connections import ConnectionLimits, guarded_protocol
from pets_protocols.service.models import ModelSource

__all__ = ["serve"]

log = logging.getLogger("pets_protocols.service")


def serve(source: ModelSource, config: ServiceConfig | None = None, *, host: str = "127.0.0.1",
          port: int = 8765, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve encrypted inference of ``source`` until interrupted (SIGINT or SIGTERM).

    ``on_ready(url)`` is called once the workers are up and requests are answered.
    """
    config = config or ServiceConfig()
    try:
        sock = socket.create_server((host, port))
    except OSError as exc:
        raise ServiceUnavailableError(f"cannot listen on {host}:{port} ({exc}); choose "
                                      "another --port (0 picks a free one)") from exc
    bound = sock.getsockname()[1]
    url = f"http://{host}:{bound}"

    def ready() -> None:
        log.info("workers up; answering on %s", url)
        if on_ready is not None:
            on_ready(url)

    http = guarded_protocol(ConnectionLimits(
        head_timeout=config.head_timeout, body_timeout=config.body_timeout,
        max_connections=config.max_connections,
        max_per_client=config.max_connections_per_client))  # raises without httptools
    app = create_app(source, config, on_ready=ready)
    server = uvicorn.Server(uvicorn.Config(
        app, http=http, lifespan="on", log_config=None, access_log=False,
        # connections are capped (in total and per client) by the protocol, as they open;
        # uvicorn's own cap counts requests too, and a full server would answer 503
        limit_concurrency=config.max_connections + 1,
        timeout_keep_alive=max(1, round(config.keep_alive)), timeout_graceful_shutdown=5,
    ))
    with sock:
        server.run(sockets=[sock])
    if not server.started:
        raise ServiceError("the service did not start (see the log above): its evaluation "
                         "workers could not open the model")
