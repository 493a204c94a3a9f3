"""Run the service under uvicorn on a socket bound first, so port 0 gives a free port."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

import uvicorn

from pets.errors import PartyError
from pets_protocols.service.app import create_app
from pets_protocols.service.config import ServiceConfig
from pets_protocols.service.connections import deadline_protocol
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
        raise PartyError(f"cannot listen on {host}:{port} ({exc}); choose another --port "
                         "(0 picks a free one)") from exc
    bound = sock.getsockname()[1]
    url = f"http://{host}:{bound}"

    def ready() -> None:
        log.info("workers up; answering on %s", url)
        if on_ready is not None:
            on_ready(url)

    app = create_app(source, config, on_ready=ready)
    try:
        import httptools  # noqa: F401  (the deadline protocol builds on uvicorn's httptools one)

        http: type | str = deadline_protocol(config.head_timeout, config.body_timeout)
    except ImportError:
        log.warning("httptools is not installed: no deadline on slow request headers "
                    "(pip install httptools)")
        http = "h11"
    server = uvicorn.Server(uvicorn.Config(
        app, http=http, lifespan="on", log_config=None, access_log=False,
        limit_concurrency=config.max_connections, timeout_keep_alive=int(config.keep_alive),
        timeout_graceful_shutdown=5,
    ))
    with sock:
        server.run(sockets=[sock])
    if not server.started:
        raise PartyError("the service did not start (see the log above): its evaluation "
                         "workers could not open the model")
