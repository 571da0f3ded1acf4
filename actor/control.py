"""Human intervention commands: keyboard, SIGUSR1 and a small loopback HTTP endpoint.

Every source puts a command on one :class:`Commands` queue; the tick loop takes them at the
start of the next tick. ``intervene`` stops the current episode, resets the scene and
restarts the forward task; ``stop`` ends the actor cleanly (flushing what it collected).

HTTP (bound to 127.0.0.1 only): ``POST /intervene``, ``POST /stop``, ``GET /status``. Requests
carry the deployment's link token (``robofume.auth.link_token``: ``deploy.token``, else derived
from the deployment secret) in the ``X-Robofume-Token`` header.
"""

from __future__ import annotations

import hmac
import json
import logging
import queue
import signal
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-Robofume-Token"


class Commands:
    """Thread-safe queue of (command, source) pairs."""

    def __init__(self, on_put: Callable[[], None] | None = None):
        self._queue: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._on_put = on_put

    def put(self, command: str, source: str) -> None:
        if command not in ("intervene", "stop"):
            raise ValueError(f"unknown actor command {command!r}; known: intervene, stop")
        self._queue.put((command, source))
        log.info("%s requested (%s)", command, source)
        if self._on_put is not None:
            self._on_put()

    def poll(self) -> list[tuple[str, str]]:
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out


class ControlServer:
    """``POST /intervene`` | ``POST /stop`` | ``GET /status`` on 127.0.0.1:``port``."""

    def __init__(
        self,
        commands: Commands,
        port: int,
        status: Callable[[], dict[str, Any]],
        token: str = "",
    ):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("control %s " + fmt, self.client_address[0], *args)

            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body, default=str).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorised(self) -> bool:
                if not token:
                    return True
                given = self.headers.get(TOKEN_HEADER, "")
                if hmac.compare_digest(given.encode(), token.encode()):
                    return True
                self._reply(401, {"error": f"missing or wrong {TOKEN_HEADER} header"})
                return False

            def do_GET(self) -> None:
                if not self._authorised():
                    return
                if self.path.rstrip("/") == "/status":
                    self._reply(200, status())
                else:
                    self._reply(404, {"error": f"unknown path {self.path}; try /status"})

            def do_POST(self) -> None:
                if not self._authorised():
                    return
                command = self.path.strip("/")
                if command not in ("intervene", "stop"):
                    self._reply(
                        404, {"error": f"unknown command {command!r}; POST /intervene or /stop"}
                    )
                    return
                outer.commands.put(command, "rpc")
                self._reply(200, {"ok": True, "command": command})

        self.commands = commands
        try:
            self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        except OSError as err:
            raise OSError(
                f"actor control port 127.0.0.1:{port} is not free ({err}); is another actor "
                "with this --actor_id running? (deploy.control_port + actor id)"
            ) from err
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="actor-control", daemon=True
        )

    def start(self) -> ControlServer:
        self._thread.start()
        log.info("intervention endpoint: curl -X POST http://127.0.0.1:%d/intervene", self.port)
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def install_signal_handler(commands: Commands) -> Callable[[], None] | None:
    """SIGUSR1 -> intervene, SIGTERM -> stop cleanly (deliver, then spill what is left).

    Main thread only (signals cannot be handled elsewhere); returns a function restoring the
    previous handlers, or None when not installed (e.g. inside a Ray actor's thread).
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGUSR1"):
        log.debug("not the main thread: SIGUSR1/SIGTERM handlers not installed")
        return None
    previous = {
        signal.SIGUSR1: signal.signal(
            signal.SIGUSR1, lambda *_: commands.put("intervene", "signal")
        ),
        signal.SIGTERM: signal.signal(signal.SIGTERM, lambda *_: commands.put("stop", "signal")),
    }

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def start_keyboard(commands: Commands, stream: Any = None) -> threading.Thread | None:
    """Read ``r`` + Enter (intervene) and ``q`` + Enter (stop) from a terminal's stdin."""
    stream = stream if stream is not None else sys.stdin
    if stream is None or (stream is sys.stdin and not stream.isatty()):
        return None

    def read() -> None:
        for line in stream:
            key = line.strip().lower()
            if key in ("r", "reset", "i"):
                commands.put("intervene", "keyboard")
            elif key in ("q", "quit", "stop"):
                commands.put("stop", "keyboard")
                return
            elif key:
                log.info("keys: r + Enter = intervene (reset, forward task), q + Enter = stop")

    thread = threading.Thread(target=read, name="actor-keyboard", daemon=True)
    thread.start()
    log.info("press r + Enter to intervene (reset, forward task), q + Enter to stop")
    return thread


def send_command(cfg: Any, command: str, actor_id: int = 0, timeout: float = 5.0) -> dict:
    """POST ``command`` to the running actor ``actor_id`` on this machine (its reply as a dict)."""
    import urllib.error
    import urllib.request

    port = cfg.deploy.control_port + actor_id
    url = f"http://127.0.0.1:{port}/{command}"
    request = urllib.request.Request(url, data=b"", method="POST")
    from robofume.auth import link_token

    token = link_token(cfg.deploy)
    if token:
        request.add_header(TOKEN_HEADER, token)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return {"ok": False, "error": f"{url}: HTTP {err.code} {err.read().decode()[:200]}"}
    except OSError as err:
        return {"ok": False, "error": f"no actor answers at {url}: {err}"}
