"""The phase runner: the method's phases, in order, inside the running system.

`robofume up` starts the Ray head and TensorBoard, then this runner as one detached process
(its own session, so `down` stops it and whatever it runs with one signal), and returns.
The runner runs what is missing of

1. ``generate``: the dataset (``robofume generate``),
2. ``reward``: the reward model (``robofume reward finetune``),
3. ``pretrain``: offline pre-training (``robofume pretrain``),

each as a subprocess whose progress bars report to a file (:data:`robofume.logs.
PROGRESS_FILE_ENV`), reusing what a phase already produced; then

4. ``online``: it starts the replay server, the reward replicas, the learner and the actors
   exactly as `up` did before, and follows the actors' steps until they reach their total;
   a service that crashes meanwhile fails the phase with its error.

Every phase's state and progress (done/total, rate, ETA) goes to the ``phases`` heartbeat
(``<run_dir>/status/phases.json``, shown by ``robofume status``) and to TensorBoard as
``phases/<name>_progress`` (:data:`robofume.metrics.PHASE_PROGRESS`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from deploy.up import prepare_steps
from robofume import metrics as tags
from robofume.config import ExperimentConfig, load_config
from robofume.logs import PROGRESS_FILE_ENV
from robofume.run_dir import RunDir
from robofume.status import read_statuses, status_dir, write_status

log = logging.getLogger(__name__)

HEARTBEAT = "phases"
PHASES = tuple(tags.PHASE_PROGRESS)
POLL_S = 2.0
SERVICE_CHECK_S = 15.0
"""How often the online phase asks its services whether they still run."""
SILENT_CHECKS = 3


class PhaseBoard:
    """The phases' states and progress: the heartbeat file and the TensorBoard scalars."""

    def __init__(self, cfg: ExperimentConfig):
        self.cfg = cfg
        self.run_dir = cfg.deploy.run_dir
        self.phases: dict[str, dict[str, Any]] = {
            name: {"state": "pending", "done": 0, "total": None, "rate": None, "eta_s": None}
            for name in PHASES
        }
        self.current: str | None = None
        self.state = "running"
        self._tb: Any = None
        self._beats = 0
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def keep_alive(self, every_s: float = 5.0) -> None:
        """Beat in the background too: starting the online services blocks for minutes."""

        def loop() -> None:
            while not self._closed.wait(every_s):
                self.beat()

        threading.Thread(target=loop, name="phases-heartbeat", daemon=True).start()

    def update(self, name: str, **fields: Any) -> None:
        self.phases[name].update(fields)
        if fields.get("state") in ("starting", "running"):
            self.current = name
            self.phases[name].setdefault("started", time.time())
        if fields.get("state") in ("done", "reused", "failed"):
            self.phases[name]["finished"] = time.time()
        self.beat()

    def beat(self) -> None:
        with self._lock:
            data = {"state": self.state, "current": self.current, "phases": self.phases}
            write_status(self.run_dir, HEARTBEAT, data)
            if not self._closed.is_set():
                self._scalars()

    def _scalars(self) -> None:
        if self._tb is None:  # after the first heartbeat: the import takes seconds
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(RunDir.of(self.cfg).tb("phases")))
        self._beats += 1
        for name, phase in self.phases.items():
            if phase["state"] in ("reused", "done"):
                fraction = 1.0
            elif phase.get("total"):
                fraction = min(1.0, phase["done"] / phase["total"])
            else:
                fraction = 0.0
            self._tb.add_scalar(tags.PHASE_PROGRESS[name], fraction, self._beats)
        self._tb.flush()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            if self._tb is not None:
                self._tb.close()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def run_step(cfg: ExperimentConfig, board: PhaseBoard, name: str, args: list[str]) -> None:
    """Run one ``robofume`` command as a subprocess, following its progress bars; the reward
    fine-tune and pre-training on the node ``deploy.prepare_resources`` names, when set."""
    from robofume.artifacts import PREPARED

    if name in PREPARED and cfg.deploy.prepare_resources:
        from deploy.remote_phase import run_remote_step

        run_remote_step(cfg, board, name)
        return
    progress_file = RunDir.of(cfg).phases / f"{name}.json"
    progress_file.unlink(missing_ok=True)
    env = {**os.environ, PROGRESS_FILE_ENV: str(progress_file), "ROBOFUME_NO_PROGRESS": "1"}
    cmd = [sys.executable, "-m", "deploy.command", *args]
    log.info("phase %s: robofume %s", name, " ".join(args))
    board.update(name, state="running", command="robofume " + " ".join(args))
    proc = subprocess.Popen(cmd, env=env)
    while proc.poll() is None:
        time.sleep(POLL_S)
        bar = _read_json(progress_file)
        if bar:
            board.update(name, **bar)
        else:
            board.beat()
    if proc.returncode != 0:
        board.update(name, state="failed", error=f"robofume {args[0]} exited {proc.returncode}")
        raise RuntimeError(f"phase {name} failed (exit {proc.returncode}); see the log above")
    bar = _read_json(progress_file) or {}
    board.update(name, **{**bar, "eta_s": 0.0}, state="done")


def prepare(cfg: ExperimentConfig, board: PhaseBoard) -> None:
    """Phases 1-3: what is missing, in order; what exists is reused."""
    for name, ready, args in prepare_steps(cfg):
        if ready:
            log.info("phase %s: reusing what exists", name)
            board.update(name, state="reused")
        else:
            run_step(cfg, board, name, args)


def start_online(cfg: ExperimentConfig, board: PhaseBoard) -> None:
    """Phase 4: the online services, as `up` starts them (found by name when running)."""
    from deploy import cluster, launch
    from robofume.node import publish_head_artifacts

    board.update("online", state="starting")
    publish_head_artifacts(cfg)  # deploy.storage: what the other nodes fetch from there
    cluster.connect(cfg.deploy)
    replay = launch.start_replay(cfg)
    cfg = launch.with_addresses(cfg, replay, launch.start_reward(cfg))
    launch.start_learner(cfg)
    launch.start_actors(cfg)
    launch.start_evaluator(cfg)
    total = cfg.deploy.num_actors * cfg.actor.total_steps or None
    board.update("online", state="running", total=total, desc="actor steps")


def follow_online(cfg: ExperimentConfig, board: PhaseBoard) -> None:
    """Online progress from the actors' heartbeats until they reach their total steps.

    Only heartbeats written since the online phase started count: an earlier `up` leaves its
    stopped actors' files behind.
    """
    since = float(board.phases["online"].get("started") or time.time())
    first: tuple[float, int] | None = None
    last_check = time.time()
    silent: dict[str, int] = {}
    while True:
        beats = read_statuses(cfg.deploy.run_dir)
        actors = [
            b
            for k, b in beats.items()
            if k.startswith("actor_") and float(b.get("time", 0)) >= since
        ]
        done = sum(int(b.get("steps", 0)) for b in actors)
        stopped = len(actors) >= cfg.deploy.num_actors and all(
            b.get("state") == "stopped" for b in actors
        )
        now = time.time()
        if first is None and done > 0:
            first = (now, done)
        rate = (done - first[1]) / (now - first[0]) if first and now > first[0] else None
        total = board.phases["online"]["total"]
        eta = (total - done) / rate if total and rate else None
        if stopped and total:
            board.update("online", state="done", done=done, rate=rate, eta_s=0.0)
            return
        board.update("online", done=done, rate=rate, eta_s=eta)
        if now - last_check >= SERVICE_CHECK_S:
            last_check = now
            check_services(cfg, silent)
        time.sleep(POLL_S)


def check_services(cfg: ExperimentConfig, silent: dict[str, int]) -> None:
    """Raise when an online service has crashed (its actors would never report "stopped") or
    has not answered :data:`SILENT_CHECKS` checks in a row; ``silent`` counts those."""
    from deploy import launch

    names = [n for n in launch.service_names(cfg, {}) if not n.startswith("reward_")]
    for name, state in launch.service_states(names).items():
        if state.get("state") == "crashed":
            error = (state.get("error") or "").strip().splitlines()
            raise RuntimeError(f"{name} crashed: {error[-1] if error else 'no error text'}")
        silent[name] = 0 if state.get("alive", True) else silent.get(name, 0) + 1
        if silent[name] >= SILENT_CHECKS:
            raise RuntimeError(f"{name} has not answered for {SILENT_CHECKS} checks: "
                               f"{state.get('error')}")  # fmt: skip


def run(cfg: ExperimentConfig, skip_prepare: bool = False) -> int:
    board = PhaseBoard(cfg)
    board.beat()
    board.keep_alive()
    try:
        if not skip_prepare:
            prepare(cfg, board)
        else:
            for name in PHASES[:-1]:
                board.update(name, state="reused")
        start_online(cfg, board)
        follow_online(cfg, board)
        board.state = "finished"
        return 0
    except Exception as err:
        log.exception("phase runner failed")
        board.state = "failed"
        board.phases.get(board.current or "", {}).setdefault("error", str(err)[:500])
        if board.current and board.phases[board.current]["state"] != "failed":
            board.phases[board.current]["state"] = "failed"
        return 1
    except SystemExit:  # `down` (SIGTERM)
        board.state = "stopped"
        for phase in board.phases.values():
            if phase["state"] in ("starting", "running"):
                phase["state"] = "stopped"
        return 0
    finally:
        board.beat()
        board.close()


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    from robofume.logs import setup_logging

    parser = argparse.ArgumentParser(prog="python -m deploy.phases", description=__doc__)
    parser.add_argument("--config_path", required=True, help="the run's resolved config.yaml")
    parser.add_argument("--skip-prepare", action="store_true", help="phases 1-3 must exist")
    args = parser.parse_args(argv)
    setup_logging()
    signal.signal(signal.SIGTERM, _terminate)
    return run(load_config(config_path=args.config_path), skip_prepare=args.skip_prepare)


# ----------------------------------------------------------------------------- from `up`
def start_runner(cfg: ExperimentConfig, skip_prepare: bool = False, timeout_s: float = 120.0):
    """Start the runner detached; return its pid once its first heartbeat exists."""
    paths = RunDir.of(cfg)
    paths.logs.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "deploy.phases", "--config_path", str(paths.config)]
    if skip_prepare:
        cmd.append("--skip-prepare")
    logfile = paths.logs / "phases.log"
    beat_file = status_dir(cfg.deploy.run_dir) / f"{HEARTBEAT}.json"
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        beat = _read_json(beat_file)
        if beat and beat.get("pid") == proc.pid:
            log.info("phase runner: pid %d, log %s", proc.pid, logfile)
            return proc.pid
        if proc.poll() is not None:
            tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-20:])
            raise RuntimeError(f"the phase runner exited ({proc.returncode}):\n{tail}")
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    raise TimeoutError(f"the phase runner wrote no heartbeat within {timeout_s:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
