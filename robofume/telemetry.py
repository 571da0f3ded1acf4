"""Reaching the head over the network: heartbeats, dashboard summaries and service discovery.

A component on a machine that shares no disk with the head (the robot PC, a worker node)
reports through the head's registry (``deploy/registry.py``, started by ``robofume up`` at
``deploy.head_address``) instead of its own run directory: the head writes its heartbeat into
``<run_dir>/status`` and its scalars, images and texts into the head's TensorBoard, so
``robofume status`` and the dashboard show it. The same registry says where replay and every
reward replica really listen, and which config the cluster runs.

Requests are JSON over HTTP with the deployment's link token (``robofume.auth.link_token``).
Telemetry is sent from a background thread through a bounded queue: a head that is down
costs the component nothing but the oldest queued reports (experience never travels here).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-Robofume-Token"
MAC_HEADER = "X-Robofume-Mac"
API = "/v1"
QUEUE_LIMIT = 256
"""Reports kept while the head is unreachable (the oldest are dropped first)."""


class HeadUnavailable(ConnectionError):
    """The head's registry did not answer (or refused the request)."""


def encode_png(image: np.ndarray) -> str:
    """uint8 HWC (or HW) image -> base64 PNG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


class HeadClient:
    """Calls to the head's registry at ``address`` (``host:port``)."""

    def __init__(self, address: str, token: str, timeout_s: float = 5.0):
        if not address or ":" not in address:
            raise ValueError(f"head address must be host:port, got {address!r}")
        self.address = address
        self.token = token
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body, default=_jsonable).encode()
        request = urllib.request.Request(f"http://{self.address}{API}{path}", data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header(TOKEN_HEADER, self.token)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                return json.loads(reply.read() or b"null")
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace").strip()[:300]
            raise HeadUnavailable(
                f"head registry at {self.address} refused {method} {path}: {err.code} {detail}"
            ) from None
        except (OSError, ValueError) as err:
            raise HeadUnavailable(f"head registry at {self.address} unreachable: {err}") from None

    def _raw(self, method: str, path: str, data: bytes | None = None, mac: str = "") -> Any:
        """A bytes request (artifacts): (body, the reply's MAC header)."""
        request = urllib.request.Request(f"http://{self.address}{API}{path}", data, method=method)
        request.add_header("Content-Type", "application/octet-stream")
        if self.token:
            request.add_header(TOKEN_HEADER, self.token)
        if mac:
            request.add_header(MAC_HEADER, mac)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                return reply.read(), reply.headers.get(MAC_HEADER, "")
        except urllib.error.HTTPError as err:
            from robofume.artifacts import ArtifactError

            detail = err.read().decode(errors="replace").strip()[:300]
            raise ArtifactError(
                f"head registry at {self.address} refused {method} {path}: {err.code} {detail}"
            ) from None
        except (OSError, ValueError) as err:
            raise HeadUnavailable(f"head registry at {self.address} unreachable: {err}") from None

    def artifact_keys(self, prefix: str) -> list[str]:
        """The artifacts under ``prefix`` the head holds."""
        from urllib.parse import quote

        return self._call("GET", f"/artifacts?prefix={quote(prefix)}")["keys"]

    def get_artifact(self, key: str) -> tuple[bytes, str]:
        """(content, MAC) of ``key``."""
        return self._raw("GET", f"/artifacts/{key}")

    def put_artifact(self, key: str, data: bytes, mac: str) -> None:
        self._raw("PUT", f"/artifacts/{key}", data, mac)

    def services(self) -> dict[str, Any]:
        """``{"replay": addr, "reward": [addr, ...], "session": ..., "config_hash": ...}``."""
        return self._call("GET", "/services")

    def config(self) -> dict[str, Any]:
        """The cluster's resolved config (a nested dict, as ``to_dict`` makes it)."""
        return self._call("GET", "/config")

    def advertise(self, service: str, address: str) -> None:
        """Tell the head where ``service`` really listens."""
        self._call("POST", "/advertise", {"service": service, "address": address})

    def heartbeat(self, component: str, status: Mapping[str, Any]) -> None:
        self._call("POST", "/heartbeat", {"component": component, "status": dict(status)})

    def summaries(self, component: str, items: list[dict[str, Any]]) -> None:
        self._call("POST", "/summaries", {"component": component, "items": items})


class HeadReporter:
    """Sends one component's heartbeats and summaries to the head off the caller's thread."""

    def __init__(self, client: HeadClient, component: str):
        self.client = client
        self.component = component
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(QUEUE_LIMIT)
        self.sent = 0
        self.dropped = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="head-report", daemon=True)
        self._thread.start()

    def _put(self, item: tuple[str, Any]) -> None:
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def heartbeat(self, status: Mapping[str, Any]) -> None:
        self._put(("heartbeat", dict(status)))

    def summaries(self, items: list[dict[str, Any]]) -> None:
        if items:
            self._put(("summaries", items))

    def _send(self, kind: str, payload: Any) -> None:
        if kind == "heartbeat":
            self.client.heartbeat(self.component, payload)
        else:
            self.client.summaries(self.component, payload)

    def _run(self) -> None:
        backoff = 0.5
        while not (self._stop.is_set() and self._queue.empty()):
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            while True:
                try:
                    self._send(*item)
                    self.sent += 1
                    if self.last_error:
                        log.info("head registry at %s answers again", self.client.address)
                    self.last_error, backoff = "", 0.5
                    break
                except HeadUnavailable as err:
                    if not self.last_error:
                        log.warning("%s; reports wait (oldest dropped past %d)", err,
                                    QUEUE_LIMIT)  # fmt: skip
                    self.last_error = str(err)
                    if self._stop.wait(backoff):
                        return  # closing: what the head did not take is given up
                    backoff = min(backoff * 2, 5.0)

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (for at most ``timeout_s``), then stop."""
        deadline = time.monotonic() + timeout_s
        while not self._queue.empty() and time.monotonic() < deadline and not self.last_error:
            time.sleep(0.05)
        self._stop.set()
        self._thread.join(timeout=max(0.1, deadline - time.monotonic()))


class HeadSummaryWriter:
    """The part of TensorBoard's ``SummaryWriter`` a component uses, sent to the head."""

    def __init__(self, reporter: HeadReporter):
        self.reporter = reporter
        self._items: list[dict[str, Any]] = []

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self._items.append({"kind": "scalar", "tag": tag, "value": float(value), "step": int(step)})

    def add_image(self, tag: str, image: np.ndarray, step: int, dataformats: str = "HWC") -> None:
        image = np.asarray(image)
        if dataformats == "CHW":
            image = np.transpose(image, (1, 2, 0))
        if image.dtype != np.uint8:
            image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
        png = encode_png(image)
        self._items.append({"kind": "image", "tag": tag, "png": png, "step": int(step)})

    def add_text(self, tag: str, text: str, step: int) -> None:
        self._items.append({"kind": "text", "tag": tag, "text": str(text), "step": int(step)})

    def flush(self) -> None:
        items, self._items = self._items, []
        self.reporter.summaries(items)

    def close(self) -> None:
        self.flush()


class TeeWriter:
    """Writes every summary to each of ``writers`` (the local TensorBoard and the head)."""

    def __init__(self, *writers: Any):
        self.writers = [w for w in writers if w is not None]

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> None:
            for writer in self.writers:
                method = getattr(writer, name, None)  # the head takes scalars, images, texts
                if method is not None:
                    method(*args, **kwargs)

        return call


class HeadRelay:
    """One process's reports to the head, for any number of components (a service on a worker
    node: its heartbeats, its sub-components', and their dashboard runs)."""

    def __init__(self, client: HeadClient):
        self.client = client
        self._reporters: dict[str, HeadReporter] = {}
        self._lock = threading.Lock()

    def reporter(self, component: str) -> HeadReporter:
        with self._lock:
            if component not in self._reporters:
                self._reporters[component] = HeadReporter(self.client, component)
            return self._reporters[component]

    def heartbeat(self, component: str, status: Mapping[str, Any]) -> None:
        self.reporter(component).heartbeat(status)


_RELAY: HeadRelay | None = None


def relay_to_head(client: HeadClient) -> HeadRelay:
    """From now on this process's heartbeats (robofume.status.write_status) and dashboard runs
    (:func:`dashboard_writer`) also go to the head (once per process)."""
    global _RELAY
    if _RELAY is None:
        from robofume.status import add_status_sink

        _RELAY = HeadRelay(client)
        add_status_sink(_RELAY.heartbeat)
        log.info("reporting to the head's registry at %s", client.address)
    return _RELAY


def dashboard_writer(log_dir: Any, **kwargs: Any) -> Any:
    """A TensorBoard writer for the component whose run is ``log_dir`` (its folder name); on a
    node away from the head it also sends every summary to the head's dashboard."""
    from pathlib import Path

    from torch.utils.tensorboard import SummaryWriter

    local = SummaryWriter(str(log_dir), **kwargs)
    if _RELAY is None:
        return local
    return TeeWriter(local, HeadSummaryWriter(_RELAY.reporter(Path(log_dir).name)))


def join_head(cfg: Any) -> Any:
    """``cfg`` as the cluster runs it, for a process on another machine (``deploy.head_address``).

    Everything but the process-local sections (``deploy``, ``actor``) comes from the head, so
    this process hashes as the learner does; replay's and the reward replicas' addresses and
    the session come from the head too. Fields this process's own flags set differently are
    named in one warning. Raises :class:`HeadUnavailable` when the head cannot say.
    """
    import dataclasses

    from robofume.auth import deployment_secret, link_token
    from robofume.config import ExperimentConfig
    from robofume.config.base import (
        PROCESS_LOCAL,
        config_differences,
        from_dict,
        hashed_values,
        to_dict,
    )

    deployment_secret(cfg.deploy)  # one clear line (SecretMissing) before anything else
    client = HeadClient(cfg.deploy.head_address, link_token(cfg.deploy))
    theirs = client.config()
    services = client.services()
    mine = to_dict(cfg)
    merged = {k: (mine[k] if k in PROCESS_LOCAL else v) for k, v in theirs.items()}
    joined = from_dict(ExperimentConfig, merged)
    differ = config_differences(hashed_values(joined), hashed_values(cfg))
    if differ:
        log.warning("taking the head's config; this machine's flags differed (head there, "
                    "here): %s", "; ".join(differ))  # fmt: skip
    deploy = dataclasses.replace(
        cfg.deploy,
        replay_address=services.get("replay") or cfg.deploy.replay_address,
        reward_addresses=tuple(services.get("reward") or cfg.deploy.reward_addresses),
        session=services.get("session") or cfg.deploy.session,
    )
    joined = joined.replace(deploy=deploy)
    if services.get("config_hash") and services["config_hash"] != joined.hash:
        raise HeadUnavailable(
            f"the head runs config {services['config_hash']} but its config hashes to "
            f"{joined.hash} here: the two machines run different robofume versions"
        )
    log.info("joined the head at %s: replay %s, reward %s, config %s", client.address,
             deploy.replay_address, ", ".join(deploy.reward_addresses), joined.hash)  # fmt: skip
    return joined


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
