"""The reward fine-tune and pre-training on the node ``deploy.prepare_resources`` names.

By default the phase runner (:mod:`deploy.phases`) runs every preparation phase as a
subprocess on the head. With ``deploy.prepare_resources`` set (``{"GPU": 1}``, or a custom
resource such as ``{"gpu_node": 1}``), the ``reward`` and ``pretrain`` phases run instead in a
:class:`PhaseWorker`, a Ray actor placed on a node that offers those resources, which runs the
same ``robofume`` command there. On a node with its own run directory (``ROBOFUME_RUN_DIR``)
the worker first fetches the dataset from the head (or ``deploy.storage``) and, once the
command succeeded, uploads what it made, signed, where the head and every other node find it
(:func:`robofume.node.upload_prepared`). The runner polls the worker for the command's progress
bar, as it reads a local command's progress file.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import ray

from robofume.config import ExperimentConfig

log = logging.getLogger(__name__)

POLL_S = 2.0
LOG_TAIL_LINES = 20


def _die_with_parent() -> None:
    """In the child: SIGKILL when the worker that started it dies (Linux), so a phase never
    outlives its worker (``robofume down``, a lost runner)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@ray.remote(max_restarts=0, max_task_retries=0)
class PhaseWorker:
    """Runs one preparation phase's ``robofume`` command on the node it was placed on."""

    def __init__(self, config_dict: dict):
        from robofume.config.base import from_dict
        from robofume.logs import setup_logging
        from robofume.node import node_config

        setup_logging()
        self.cfg = node_config(from_dict(ExperimentConfig, config_dict))
        self.proc: subprocess.Popen | None = None
        self.phase = ""
        self.progress_file: Path | None = None
        self.log_file: Path | None = None
        self.uploaded: int | None = None
        self.error: str | None = None

    def where(self) -> dict[str, Any]:
        """This node's address and the run directory the phase writes to."""
        from robofume.node import away_from_head

        return {
            "node": ray.util.get_node_ip_address(),
            "run_dir": self.cfg.deploy.run_dir,
            "away_from_head": away_from_head(),
        }

    def start(self, phase: str) -> list[str]:
        """Fetch what this node lacks, then start the phase's command; returns its arguments."""
        from deploy.up import prepare_steps
        from robofume.config import save_config
        from robofume.logs import PROGRESS_FILE_ENV
        from robofume.node import away_from_head, data_dir, open_store, sync_dataset
        from robofume.run_dir import RunDir

        cfg, paths = self.cfg, RunDir.of(self.cfg)
        if away_from_head():
            save_config(cfg, paths.config)  # this node's copy: its own run directory
            got = sync_dataset(cfg, open_store(cfg.deploy))
            log.info("%s: %d dataset file(s) fetched into %s", phase, len(got), data_dir(cfg))
        args = next(a for name, _, a in prepare_steps(cfg, str(data_dir(cfg))) if name == phase)
        self.phase = phase
        paths.phases.mkdir(parents=True, exist_ok=True)
        paths.logs.mkdir(parents=True, exist_ok=True)
        self.progress_file = paths.phases / f"{phase}.json"
        self.progress_file.unlink(missing_ok=True)
        self.log_file = paths.logs / f"{phase}.log"
        package_root = str(Path(__file__).resolve().parents[1])
        python_path = [package_root, os.environ.get("PYTHONPATH", "")]
        env = {
            **os.environ,
            PROGRESS_FILE_ENV: str(self.progress_file),
            "ROBOFUME_NO_PROGRESS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, python_path)),
        }
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "deploy.command", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        log.info("phase %s: robofume %s (pid %d)", phase, " ".join(args), self.proc.pid)
        return args

    def poll(self) -> dict[str, Any]:
        """``state`` (running, done, failed), the progress bar, and the error when failed."""
        from robofume.node import upload_prepared

        bar = self._bar()
        if self.proc is None or self.proc.poll() is None:
            return {"state": "running", "bar": bar}
        if self.proc.returncode != 0:
            self.error = self.error or (
                f"robofume {self.phase} exited {self.proc.returncode} on "
                f"{ray.util.get_node_ip_address()}:\n{self._tail()}"
            )
        elif self.uploaded is None and self.error is None:
            try:
                self.uploaded = upload_prepared(self.cfg, self.phase)
            except Exception as err:  # the head must hear why, not wait
                self.error = f"{self.phase}: upload failed: {err}"
        if self.error:
            return {"state": "failed", "bar": bar, "error": self.error}
        return {"state": "done", "bar": bar, "uploaded": self.uploaded}

    def _bar(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.progress_file.read_text()) if self.progress_file else None
        except (OSError, json.JSONDecodeError):
            return None

    def _tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines() if self.log_file else []
        except OSError:
            return "(no log)"
        return "\n".join(lines[-LOG_TAIL_LINES:])


def run_remote_step(cfg: ExperimentConfig, board: Any, name: str) -> None:
    """Run phase ``name`` in a :class:`PhaseWorker` and wait for it, reporting its progress
    on ``board``; raises with the command's own error when it fails."""
    from deploy import cluster
    from deploy.up import config_dict
    from robofume.node import fetch_prepared

    resources = dict(cfg.deploy.prepare_resources)
    cluster.connect(cfg.deploy)
    worker = PhaseWorker.options(num_cpus=0, resources=resources).remote(config_dict(cfg))
    try:
        try:
            where = ray.get(worker.where.remote(), timeout=cfg.deploy.start_timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise RuntimeError(
                f"phase {name}: no node offers {resources} (deploy.prepare_resources) within "
                f"{cfg.deploy.start_timeout_s:.0f} s; `ray status` lists what the nodes offer"
            ) from None
        args = ray.get(worker.start.remote(name), timeout=cfg.deploy.start_timeout_s)
        log.info("phase %s: running on %s (run dir %s)", name, where["node"], where["run_dir"])
        board.update(name, state="running", node=where["node"],
                     command="robofume " + " ".join(args))  # fmt: skip
        while (state := ray.get(worker.poll.remote(), timeout=120))["state"] == "running":
            board.update(name, **state["bar"]) if state["bar"] else board.beat()
            time.sleep(POLL_S)
    finally:
        ray.kill(worker)
    if state["state"] == "failed":
        board.update(name, state="failed", error=state["error"][-500:])
        raise RuntimeError(f"phase {name} failed: {state['error']}")
    fetched = fetch_prepared(cfg, name)
    log.info("phase %s: done on %s, %s artifact(s) uploaded, %d fetched back", name,
             where["node"], state.get("uploaded"), len(fetched))  # fmt: skip
    board.update(name, **{**(state["bar"] or {}), "eta_s": 0.0}, state="done")
