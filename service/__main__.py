"""``python -m service``: run the align service under uvicorn with the ``DAN_*`` settings.

    DAN_PORT=8000 python -m service

Exit codes: 0 after a clean shutdown (SIGTERM / Ctrl-C), 1 if the service
stopped itself (warm-up failed), 2 for invalid settings, 3 if start-up failed
(the model file, the execution provider or the face detector's weights; the
log says why).
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import uvicorn
from pydantic import ValidationError

from service.app import create_app
from service.config import Settings, describe_errors
from service.http_server import server_config
from service.log_limit import RateLimitFilter

log = logging.getLogger("service")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _stopped_by(signum: int, frame: FrameType | None) -> None:
    log.info("stopped by %s", signal.Signals(signum).name)


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as e:
        logging.basicConfig(level=logging.ERROR, format=LOG_FORMAT)
        log.error("invalid settings, not starting:\n%s", describe_errors(e.errors()))
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT, force=True)
    # The server's own warnings (invalid HTTP, too many connections) come once per bad client:
    # a few per minute and kind are enough.
    logging.getLogger("uvicorn.error").addFilter(RateLimitFilter())
    app = create_app(settings)
    config = server_config(app, settings)
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGTERM / SIGINT, then re-raises the signal to the handler
    # that was there before it: this one, so that the exit status says how the shutdown went.
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _stopped_by)
    server.run()
    if not server.started:
        return 3
    return 1 if app.state.service.fatal is not None else 0


if __name__ == "__main__":
    sys.exit(main())
