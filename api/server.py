"""``mhubert serve`` under uvicorn, with a clean SIGTERM: readiness false at once, accepted requests
finish, exit status 0 (uvicorn itself would re-raise the signal after its shutdown and die of it)."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

import uvicorn

from api.app import create_app
from api.service import ModelService
from api.settings import Settings
from mhubert.errors import BadInput

log = logging.getLogger(__name__)


class Server(uvicorn.Server):
    """uvicorn that tells the service to drain on the first SIGTERM/SIGINT and exits normally."""

    def __init__(self, config: uvicorn.Config, service: ModelService) -> None:
        super().__init__(config)
        self.service = service

    def handle_exit(self, sig: int, frame) -> None:  # noqa: ANN001 - signal handler signature
        if not self.service.draining:
            log.info("signal %d: not ready from now on, finishing accepted requests", sig)
            self.service.start_draining()
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Like uvicorn's, minus re-raising the signal at the end: a drained stop exits 0."""
        if threading.current_thread() is not threading.main_thread():  # signals: main thread only
            yield
            return
        old = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def serve(settings: Settings, log_level: str = "info") -> int:
    """Load (unless ``lazy``), then serve until SIGTERM; returns the exit status."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.model_uri:
        raise BadInput("no model given: pass --model URI or set MHUBERT_MODEL_URI")
    service = ModelService(settings)
    if not settings.lazy:
        try:
            service.load()
        except Exception as e:  # noqa: BLE001 - one line naming the problem, no traceback
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise BadInput(f"cannot serve: {msg} (pass --lazy to start anyway, not ready)") from None
    app = create_app(settings, service)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level,
                            proxy_headers=True, timeout_graceful_shutdown=int(settings.drain_timeout_s))
    Server(config, service).run()
    return 0
