"""The head's registry: where components on other machines report, and discover the cluster.

``robofume up`` starts it on the head (``robofume registry``, ``deploy.head_port``). It is the
only writer of what remote components send into the head's run directory:

- ``POST /v1/heartbeat`` ``{"component", "status"}``: ``<run_dir>/status/<component>.json``
  (stamped with the head's clock and the sender's address), so ``robofume status`` lists the
  robot-PC actor beside the services;
- ``POST /v1/summaries`` ``{"component", "items": [{kind: scalar|image|text, tag, step, ...}]}``:
  the head's TensorBoard run ``tb/<session>/<component>``;
- ``POST /v1/advertise`` ``{"service", "address"}``: where a service on another node really
  listens (a reward replica, replay);
- ``GET /v1/services``: replay's and every reward replica's address, the session, the config
  hash; ``GET /v1/config``: the cluster's resolved config (a robot-PC actor runs with it);
- ``GET /v1/artifacts?prefix=P``, ``GET /v1/artifacts/<key>``: the head's reward model,
  checkpoints and dataset for a service on another node, each with its MAC under the
  deployment secret (robofume/artifacts.py); ``PUT /v1/artifacts/<key>``: a service's online
  checkpoint, kept only if its MAC checks, so a restart on any node resumes from it.

Every request carries the deployment's link token; the registry listens on loopback unless
``deploy.bind_host`` says otherwise, and beyond loopback only with a token. Bodies are
bounded, component names are plain names (never paths), images must decode as PNG.
"""

from __future__ import annotations

import base64
import hmac
import io
import json
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from robofume.config import ExperimentConfig
from robofume.config.base import to_dict
from robofume.grpc_utils import check_bind
from robofume.run_dir import RunDir
from robofume.status import write_status
from robofume.telemetry import API, MAC_HEADER, TOKEN_HEADER

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024 * 1024
"""Largest accepted request body (an episode strip PNG is tens of kB)."""
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_ARTIFACT = 2 * 1024**3
"""Largest artifact a service may upload (an online checkpoint)."""
LOOPBACK = ("127.0.0.1", "localhost", "::1", "0.0.0.0", "")


class BadRequest(ValueError):
    """What the sender got wrong (HTTP 400, with this message)."""


class Registry:
    """What the head knows and writes; the HTTP layer is :class:`RegistryServer`."""

    def __init__(self, cfg: ExperimentConfig, secret: bytes = b""):
        self.cfg = cfg
        self.secret = secret
        self.paths = RunDir.of(cfg)
        d = cfg.deploy
        self.services: dict[str, str] = {"replay": d.replay_address}
        self.services.update({f"reward_{i}": a for i, a in enumerate(d.reward_addresses)})
        self._writers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.received = {"heartbeat": 0, "summaries": 0, "advertise": 0, "artifacts": 0}

    # --- reads ---------------------------------------------------------------------------
    def service_map(self, reached_at: str = "") -> dict[str, Any]:
        """Where the services listen. ``reached_at``: the head's address as the asker reached
        it; a service on the head known by a loopback address is given there instead (it
        listens on every interface when the asker is on another machine)."""

        def seen(address: str) -> str:
            host, _, port = address.rpartition(":")
            if reached_at and host in LOOPBACK:
                return f"{reached_at}:{port}"
            return address

        with self._lock:
            rewards = sorted(
                (k for k in self.services if k.startswith("reward_")), key=lambda k: int(k[7:])
            )
            return {
                "replay": seen(self.services.get("replay", "")),
                "reward": [seen(self.services[k]) for k in rewards],
                "session": self.cfg.deploy.session,
                "config_hash": self.cfg.hash,
            }

    def config(self) -> dict[str, Any]:
        return to_dict(self.cfg)

    def artifact_keys(self, prefix: str) -> list[str]:
        from robofume.artifacts import READ_ONLY, WRITABLE, local_keys

        if prefix not in READ_ONLY + WRITABLE:
            raise BadRequest(f"prefix must be one of {', '.join(READ_ONLY + WRITABLE)}")
        return local_keys(self.cfg, prefix)

    def artifact(self, key: str) -> tuple[Any, str]:
        """(the head's file of ``key``, its MAC); KeyError when it has none."""
        from robofume.artifacts import artifact_mac, check_key, head_path

        try:
            path = head_path(self.cfg, check_key(key))
        except ValueError as err:
            raise BadRequest(str(err)) from None
        if not path.is_file():
            raise KeyError(key)
        data = path.read_bytes()
        return data, artifact_mac(self.secret, key, data)

    def store_artifact(self, key: str, data: bytes, mac: str) -> None:
        import hmac as _hmac
        import os

        from robofume.artifacts import artifact_mac, check_key, head_path

        try:
            path = head_path(self.cfg, check_key(key, writable=True))
        except ValueError as err:
            raise BadRequest(str(err)) from None
        if not _hmac.compare_digest(mac, artifact_mac(self.secret, key, data)):
            raise BadRequest(f"{key}: not signed with this deployment's secret; refused")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        self.received["artifacts"] += 1
        log.info("artifact %s: %d bytes kept", key, len(data))

    # --- writes --------------------------------------------------------------------------
    def heartbeat(self, component: str, status: Any, sender: str) -> None:
        if not isinstance(status, dict):
            raise BadRequest("status must be a JSON object")
        payload = {**status, "via_head": True, "sender": sender, "sent_time": status.get("time")}
        payload["time"] = time.time()  # the head's clock decides what is stale
        write_status(self.paths.root, component, payload)
        self.received["heartbeat"] += 1

    def summaries(self, component: str, items: Any) -> int:
        if not isinstance(items, list):
            raise BadRequest("items must be a list")
        parsed = [self._parse(item) for item in items]  # all or nothing
        writer = self._writer(component)
        for kind, tag, step, value in parsed:
            if kind == "scalar":
                writer.add_scalar(tag, value, step)
            elif kind == "image":
                writer.add_image(tag, value, step, dataformats="HWC")
            else:
                writer.add_text(tag, value, step)
        writer.flush()
        self.received["summaries"] += 1
        return len(parsed)

    def advertise(self, service: str, address: Any) -> None:
        if not isinstance(address, str) or not re.fullmatch(r"[A-Za-z0-9_.\-\[\]:]+:\d+", address):
            raise BadRequest(f"address must be host:port, got {address!r}")
        with self._lock:
            self.services[service] = address
        self.received["advertise"] += 1
        log.info("%s advertises %s", service, address)

    def close(self) -> None:
        with self._lock:
            for writer in self._writers.values():
                writer.close()
            self._writers.clear()

    def _writer(self, component: str) -> Any:
        with self._lock:
            if component not in self._writers:
                from torch.utils.tensorboard import SummaryWriter

                folder = self.paths.tb(component)
                folder.mkdir(parents=True, exist_ok=True)
                self._writers[component] = SummaryWriter(str(folder))
            return self._writers[component]

    @staticmethod
    def _parse(item: Any) -> tuple[str, str, int, Any]:
        if not isinstance(item, dict):
            raise BadRequest("each item must be a JSON object")
        kind, tag, step = item.get("kind"), item.get("tag"), item.get("step")
        if not isinstance(tag, str) or not tag or len(tag) > 200:
            raise BadRequest(f"bad tag {tag!r}")
        if not isinstance(step, int) or isinstance(step, bool):
            raise BadRequest(f"{tag}: step must be an integer, got {step!r}")
        if kind == "scalar":
            value = item.get("value")
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise BadRequest(f"{tag}: scalar value must be a number, got {value!r}")
            return kind, tag, step, float(value)
        if kind == "text":
            text = item.get("text")
            if not isinstance(text, str):
                raise BadRequest(f"{tag}: text must be a string")
            return kind, tag, step, text[:10_000]
        if kind == "image":
            return kind, tag, step, _decode_png(item.get("png"), tag)
        raise BadRequest(f"{tag}: unknown kind {kind!r} (scalar, image, text)")


def _decode_png(data: Any, tag: str) -> np.ndarray:
    from PIL import Image

    if not isinstance(data, str):
        raise BadRequest(f"{tag}: image must be base64 PNG")
    try:
        raw = base64.b64decode(data, validate=True)
        if not raw.startswith(b"\x89PNG\r\n\x1a\n"):
            raise ValueError("not a PNG")
        with Image.open(io.BytesIO(raw)) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise ValueError(f"{img.width}x{img.height} is too large")
            array = np.asarray(img.convert("RGB"))
    except (ValueError, OSError) as err:
        raise BadRequest(f"{tag}: image does not decode ({err})") from None
    return array


class _Handler(BaseHTTPRequestHandler):
    registry: Registry
    token: str

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    def _reply(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if not self.token:
            return True
        given = self.headers.get(TOKEN_HEADER, "")
        if hmac.compare_digest(given.encode(), self.token.encode()):
            return True
        self._reply(401, {"error": f"missing or wrong {TOKEN_HEADER} (the deployment's token)"})
        return False

    def do_GET(self) -> None:
        if not self._authorized():
            return
        from urllib.parse import parse_qs, urlsplit

        url = urlsplit(self.path)
        try:
            if self.path == f"{API}/services":
                self._reply(200, self.registry.service_map(self.connection.getsockname()[0]))
            elif self.path == f"{API}/config":
                self._reply(200, self.registry.config())
            elif url.path == f"{API}/artifacts":
                prefix = (parse_qs(url.query).get("prefix") or [""])[0]
                self._reply(200, {"keys": self.registry.artifact_keys(prefix)})
            elif url.path.startswith(f"{API}/artifacts/"):
                self._send_artifact(url.path[len(f"{API}/artifacts/") :])
            else:
                self._reply(404, {"error": f"no such resource {self.path}"})
        except BadRequest as err:
            self._reply(400, {"error": str(err)})

    def _send_artifact(self, key: str) -> None:
        try:
            data, mac = self.registry.artifact(key)
        except KeyError:
            self._reply(404, {"error": f"the head has no artifact {key}"})
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header(MAC_HEADER, mac)
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        if not self._authorized():
            return
        try:
            if not self.path.startswith(f"{API}/artifacts/"):
                self._reply(404, {"error": f"no such resource {self.path}"})
                return
            length = int(self.headers.get("Content-Length", "0"))
            if length <= 0 or length > MAX_ARTIFACT:
                raise BadRequest(f"artifact of {length} bytes (1 to {MAX_ARTIFACT} accepted)")
            data = self.rfile.read(length)
            key = self.path[len(f"{API}/artifacts/") :]
            self.registry.store_artifact(key, data, self.headers.get(MAC_HEADER, ""))
            self._reply(200, {"ok": True, "bytes": len(data)})
        except BadRequest as err:
            log.warning("refused an artifact from %s: %s", self.client_address[0], err)
            self._reply(400, {"error": str(err)})

    def do_POST(self) -> None:
        if not self._authorized():
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if length <= 0 or length > MAX_BODY:
                raise BadRequest(f"body of {length} bytes (1 to {MAX_BODY} accepted)")
            try:
                body = json.loads(self.rfile.read(length))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise BadRequest(f"body is not JSON ({err})") from None
            if not isinstance(body, dict):
                raise BadRequest("body must be a JSON object")
            sender = self.client_address[0]
            if self.path == f"{API}/heartbeat":
                self.registry.heartbeat(_name(body, "component"), body.get("status"), sender)
                self._reply(200, {"ok": True})
            elif self.path == f"{API}/summaries":
                n = self.registry.summaries(_name(body, "component"), body.get("items"))
                self._reply(200, {"ok": True, "written": n})
            elif self.path == f"{API}/advertise":
                self.registry.advertise(_name(body, "service"), body.get("address"))
                self._reply(200, {"ok": True})
            else:
                self._reply(404, {"error": f"no such resource {self.path}"})
        except BadRequest as err:
            log.warning("refused a report from %s: %s", self.client_address[0], err)
            self._reply(400, {"error": str(err)})


def _name(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise BadRequest(f"{key} must be a plain name (letters, digits, _.-), got {value!r}")
    return value


class RegistryServer:
    """The registry over HTTP on ``host:port`` (port 0: any free one), in a thread."""

    def __init__(
        self, cfg: ExperimentConfig, token: str, host: str, port: int, secret: bytes = b""
    ):
        check_bind(host, token, "", cfg.deploy.allow_insecure_remote, "head registry")
        registry = Registry(cfg, secret)
        handler = type("Handler", (_Handler,), {"registry": registry, "token": token})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.registry: Registry = handler.registry
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"{host}:{self.port}"

    def start(self) -> RegistryServer:
        self._thread.start()
        log.info("head registry listening on %s:%d", self.host, self.port)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.registry.close()


def serve(cfg: ExperimentConfig, stop: threading.Event | None = None) -> None:
    """``robofume registry``: run until ``stop`` (or forever)."""
    from robofume.auth import deployment_secret, link_token

    secret = deployment_secret(cfg.deploy)  # the head has made it; none here: not the head
    server = RegistryServer(cfg, link_token(cfg.deploy), cfg.deploy.bind_host,
                            cfg.deploy.head_port, secret).start()  # fmt: skip
    try:
        (stop or threading.Event()).wait()
    finally:
        server.stop()
