"""Chaos run: kill -9 the replay server, the reward replica and the learner of a live cluster.

Starts an isolated smoke-preset cluster with `robofume up --skip-prepare` (several simulated
actors; the dataset, reward model and pre-trained policy of --source-run, prepared first when
missing), waits until every component reports, then for --seconds kills one component at a
time with SIGKILL, round-robin replay -> reward -> learner, --kills-per-component times each
(Ray restarts them: ``max_restarts=3``). The PIDs come from the heartbeats
(``<run_dir>/status/{replay,learner}.json``) and, for the reward replica, from its Ray worker
(``ray::RewardReplica``); each is checked to belong to this run's Ray session before the kill.

Measured:

* recovery: seconds from the kill until the component is healthy again the way
  `robofume status` sees it (replay: a server answers with a new epoch in its marker; reward:
  the gRPC health check says SERVING; learner: a heartbeat from the new process), plus when
  the new replay process's heartbeat appeared and when the learner trained again;
* loss: transitions the actors produced (sum of their ``steps``) against the distinct
  transitions (``episode_id``, ``step``) in replay at the end, read item by item from the
  final replay checkpoint (`robofume down` writes it after the actors flushed). Transitions the
  actors still held at the stop (spilled segments for the next start) are counted apart;
* duplicates: the learner sampler's dropped-duplicate counter (summed over its restarts) and
  duplicate items still in replay at the end;
* actor tick overruns in heartbeat intervals that overlap a fault (kill until recovery plus
  --grace) against those that do not.

The replay table is sized beyond what the run produces (--replay-size), so FIFO eviction
cannot pass for loss. Results: ``benchmarks/results/chaos.json``, a markdown table on stdout
and the ``## Chaos run`` section of ``benchmarks/RESULTS.md``.

With ``--worker-nodes 2 --components node`` the learner and the reward replica run on worker
nodes that share no disk with the head (deploy/nodes.py: each its own HOME and run
directory), and each kill takes away the whole node that runs the learner: every process of
it at once. Ray restarts the learner (and a replica that was there) on the other node, which
fetches the learner's last uploaded checkpoint from the head; a fresh node then joins in the
lost one's place. Its results go to their own section, ``## Chaos run: whole worker nodes``.

    python -m benchmarks.chaos --seconds 450 --kills-per-component 3
    python -m benchmarks.chaos --worker-nodes 2 --components node --kills-per-component 2
    python -m benchmarks.chaos --report-only   # tables and section again from the saved JSON
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.chaos_audit import COMPONENTS, Kill, audit_replay, summarize
from benchmarks.chaos_report import HEADING, markdown, section
from benchmarks.chaos_targets import (
    component_pid,
    ensure_prepared,
    run_config,
    wait_gone,
    wait_ready,
)
from benchmarks.cluster_run import (
    ROOT,
    Cluster,
    cluster_overrides,
    link_prepared,
    load_average,
    running_cluster,
)
from benchmarks.common import machine, record_section
from robofume.logs import setup_logging

log = logging.getLogger("benchmarks.chaos")

RAY_MAX_RESTARTS = 3
"""``max_restarts`` of the services and reward replicas (deploy/services.py, deploy/launch.py)."""
RESULT_JSON = ROOT / "benchmarks" / "results" / "chaos.json"
NODES_JSON = ROOT / "benchmarks" / "results" / "chaos_nodes.json"
NODES_HEADING = "## Chaos run: whole worker nodes"
NODE_RESOURCE = "chaos_gpu_node"
"""The resource the worker nodes offer and the learner and the replica ask for."""


# ----------------------------------------------------------------------------- preparation


# ----------------------------------------------------------------------------- the cluster


# ----------------------------------------------------------------------------- probes
class Probes:
    """What `robofume status` checks live, each time on a fresh connection (no gRPC backoff)."""

    def __init__(self, cfg: Any):
        self.cfg = cfg

    def replay(self) -> dict[str, Any] | None:
        """Replay's marker epoch and table size, or None while it does not answer."""
        import reverb

        from robofume.replay_client.info import table_stats
        from robofume.replay_client.marker import read_marker

        address = self.cfg.deploy.replay_address
        try:
            client = reverb.Client(address)
            marker = read_marker(client, timeout_s=1.0, address=address)
            stats = table_stats(client, timeout_s=1.0)
        except Exception:  # down, restarting or restoring: not healthy yet
            return None
        return {"epoch": marker.epoch, "size": stats["size"], "inserts": stats["inserts"]}

    def reward(self) -> bool:
        """True when every reward replica's gRPC health check says SERVING."""
        from robofume.reward_client import RewardClient

        addresses = list(self.cfg.deploy.reward_addresses)
        client = RewardClient(addresses, self.cfg, health_checks=False)
        try:
            return len(client.healthy(refresh=True)) == len(addresses)
        finally:
            client.close()


# ----------------------------------------------------------------------------- chaos
class Chaos:
    """Kills on a fixed schedule, waiting for each recovery; samples heartbeats throughout."""

    def __init__(self, cluster: Cluster, cfg: Any, args: argparse.Namespace):
        self.cluster = cluster
        self.cfg = cfg
        self.args = args
        self.probes = Probes(cfg)
        self.kills: list[Kill] = []
        self._next_sample = 0.0
        self.nodes: list[Any] = []  # worker nodes that are up (deploy/nodes.py)
        self.joined = 0

    def tick(self) -> None:
        """Sample the heartbeats when due."""
        if time.monotonic() >= self._next_sample:
            self._next_sample = time.monotonic() + self.args.every
            self.cluster.sample()

    def idle_until(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            self.tick()
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def run(self) -> tuple[float, float]:
        """The chaos phase; returns its (start, end) wall-clock times."""
        plan = [c for _ in range(self.args.kills_per_component) for c in self.args.components]
        interval = self.args.seconds / (len(plan) + 1)
        start, t0 = time.time(), time.monotonic()
        given_up: set[str] = set()
        for i, component in enumerate(plan):
            self.idle_until(t0 + (i + 1) * interval)
            if component in given_up:
                continue
            kill = self.kill(component)
            if kill is None or kill.recovered_s is None:
                given_up.add(component)
        self.idle_until(max(t0 + self.args.seconds, time.monotonic() + self.args.min_tail))
        return start, time.time()

    def join_node(self) -> None:
        """One more worker node (its own HOME and run directory, only the secret and token)."""
        from deploy.nodes import join_node

        root = (self.args.out / "nodes" / f"node_{self.joined}").resolve()
        self.joined += 1
        self.nodes.append(join_node(self.cfg.deploy, root, {NODE_RESOURCE: 1}))
        log.info("worker node %s joined", root.name)

    def learner_node(self) -> tuple[Any, int] | None:
        """The worker node that runs the learner, and the learner's PID."""
        from deploy.nodes import node_processes

        pid = int((self.cluster.statuses().get("learner") or {}).get("pid") or 0)
        for node in self.nodes:
            if pid in {p.pid for p in node_processes(node)}:
                return node, pid
        return None

    def live_pid(self, component: str, timeout_s: float = 30.0) -> int | None:
        """The component's PID, waiting a little for a restarted process's first heartbeat
        (a node: its learner's)."""
        deadline = time.monotonic() + timeout_s
        while (pid := self._pid(component)) is None:
            if time.monotonic() > deadline:
                return None
            self.tick()
            time.sleep(1.0)
        return pid

    def _pid(self, component: str) -> int | None:
        if component == "node":
            found = self.learner_node()
            return found[1] if found else None
        return component_pid(self.cfg, self.cluster, component)

    def kill(self, component: str) -> Kill | None:
        pid = self.live_pid(component)
        if pid is None:
            log.error("%s: no live pid in this run's Ray session; not killed", component)
            return None
        before = self.state(component)
        if component == "node":
            from deploy.nodes import remove_node

            node, _ = self.learner_node() or (None, None)
            if node is None:
                log.error("the learner left its node before the kill; not killed")
                return None
            self.nodes.remove(node)
            killed = remove_node(node)
            kill = Kill(component, pid, time.time(), before=before)
            log.info("node %s gone (%d processes killed, the learner's pid %d), load %.1f",
                     node.root.name, killed, pid, load_average())  # fmt: skip
        else:
            os.kill(pid, signal.SIGKILL)
            kill = Kill(component, pid, time.time(), before=before)
            log.info("kill -9 %s (pid %d), load %.1f", component, pid, load_average())
        self.kills.append(kill)
        wait_gone(pid)
        self.wait_recovered(kill)
        if component == "node":
            self.join_node()  # the machine is replaced: the next kill has somewhere to go
        return kill

    def state(self, component: str) -> dict[str, Any]:
        """What the component had just before the kill (to compare with after the restart)."""
        if component == "replay":
            return self.probes.replay() or {}
        if component in ("learner", "node"):
            beat = self.cluster.statuses().get("learner") or {}
            return {k: beat.get(k) for k in ("step", "online_updates", "checkpoint")}
        return {}

    def healthy(self, kill: Kill) -> dict[str, Any] | None:
        """What shows the component is back (None: not yet)."""
        if kill.component == "replay":
            now = self.probes.replay()
            return now if now and now["epoch"] != kill.before.get("epoch") else None
        if kill.component == "reward":
            return {"serving": True} if self.probes.reward() else None
        beat = self.cluster.statuses().get("learner") or {}
        fresh = beat.get("pid") != kill.pid and float(beat.get("time", 0)) > kill.at
        if kill.component == "node" and fresh and not self.probes.reward():
            return None  # a replica that was on the node is not back yet
        return {k: beat.get(k) for k in ("pid", "step", "online_updates")} if fresh else None

    def wait_recovered(self, kill: Kill) -> None:
        deadline = time.monotonic() + self.args.recovery_timeout
        while time.monotonic() < deadline:
            self.tick()
            after = self.healthy(kill)
            if after is not None:
                kill.recovered_s = round(time.time() - kill.at, 1)
                kill.after = after
                log.info(
                    "%s healthy again after %.1f s: %s", kill.component, kill.recovered_s, after
                )
                return
            time.sleep(0.5)
        log.error(
            "%s not healthy %.0f s after the kill", kill.component, self.args.recovery_timeout
        )


# ----------------------------------------------------------------------------- after the run


# ----------------------------------------------------------------------------- analysis


# ----------------------------------------------------------------------------- report


# ----------------------------------------------------------------------------- main
def cluster_args(args: argparse.Namespace) -> list[str]:
    return [
        "--deploy.num_actors",
        str(args.actors),
        "--actor.tick_hz",
        str(args.tick_hz),
        "--actor.total_steps",
        "10000000",
        "--actor.keyboard",
        "false",
        "--actor.report_every_s",
        str(args.report_every),
        "--replay.online_max_size",
        str(args.replay_size),
        "--replay.checkpoint_every_s",
        str(args.replay_checkpoint_s),
        *(node_args() if args.worker_nodes else []),
        *args.overrides,
    ]


def node_args() -> list[str]:
    """The learner and the reward replica on the worker nodes (the head keeps replay)."""
    need = "{" + NODE_RESOURCE + ": 0.5}"
    return ["--deploy.learner_resources", need, "--deploy.reward_resources", need]


def final_status(cluster: Cluster) -> dict[str, Any]:
    """`robofume status --json` at the end of the chaos phase, condensed."""
    try:
        report = cluster.status_json()
    except Exception as err:  # the report says so; the stop and the audit still run
        log.error("robofume status failed: %s", err)
        return {"error": str(err)[:500]}
    services = report.get("services") or {}
    return {
        "replay_healthy": (report.get("replay") or {}).get("healthy"),
        "reward_healthy": [r.get("healthy") for r in report.get("reward") or []],
        "services": {k: v.get("state") or v.get("alive") for k, v in services.items()},
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    ensure_prepared("smoke", args.source_run, args.data)
    run_dir = (args.out / "run").resolve()
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    link_prepared(args.source_run, run_dir)
    overrides = cluster_overrides("smoke", run_dir, str(args.data), cluster_args(args))
    chaos = None
    try:
        with running_cluster(run_dir, overrides) as cluster:
            cfg = run_config(run_dir)
            chaos = Chaos(cluster, cfg, args)
            for _ in range(args.worker_nodes):  # the learner and the replica wait for them
                chaos.join_node()
            wait_ready(cluster, args.actors, args.ready_timeout)
            log.info("replay before the chaos: %s", chaos.probes.replay())  # imports Reverb
            chaos.idle_until(time.monotonic() + args.warmup)
            window = chaos.run()
            status_end = final_status(cluster)
    finally:
        from deploy.nodes import remove_node

        for node in chaos.nodes if chaos else []:
            remove_node(node)
    cluster.sample()  # the final heartbeats, written at the stop
    result = summarize(cluster, chaos.kills, window, args)
    result["audit"] = audit_replay(run_dir, args.out / "audit")
    result["status_at_end"] = status_end
    result["chaos_start"] = window[0]
    result["up_s"] = round(cluster.up_s, 1)
    (args.out / "samples.json").write_text(json.dumps(cluster.samples, default=str))
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=450.0, help="length of the chaos phase")
    p.add_argument("--kills-per-component", type=int, default=3, help="kills of each component")
    p.add_argument(
        "--components",
        nargs="+",
        default=["replay", "reward", "learner"],
        choices=COMPONENTS,
        help="what to kill, round-robin",
    )
    p.add_argument(
        "--worker-nodes",
        type=int,
        default=0,
        help="worker nodes for the learner and the replica (needed to kill a node)",
    )
    p.add_argument("--actors", type=int, default=2, help="simulated actors")
    p.add_argument("--tick-hz", type=float, default=10.0, help="actor control rate")
    p.add_argument("--replay-size", type=int, default=100_000, help="online table max size")
    p.add_argument("--replay-checkpoint-s", type=float, default=30.0, help="replay checkpoints")
    p.add_argument("--warmup", type=float, default=20.0, help="seconds before the chaos phase")
    p.add_argument("--min-tail", type=float, default=30.0, help="after the last recovery, s")
    p.add_argument("--grace", type=float, default=10.0, help="fault window after recovery, s")
    p.add_argument("--recovery-timeout", type=float, default=150.0, help="per kill, s")
    p.add_argument("--ready-timeout", type=float, default=400.0, help="cluster start, s")
    p.add_argument("--every", type=float, default=1.0, help="heartbeat sampling period, s")
    p.add_argument("--report-every", type=float, default=2.0, help="actor heartbeat period, s")
    p.add_argument("--source-run", type=Path, default=Path("runs/smoke"))
    p.add_argument("--data", type=Path, default=Path("data/smoke"), help="dataset dir")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/chaos"))
    p.add_argument("--no-record", action="store_true", help="do not write RESULTS.md / JSON")
    p.add_argument(
        "--report-only", action="store_true", help="rewrite the report from the saved JSON"
    )
    p.add_argument("overrides", nargs="*", help="extra --section.field value overrides")
    args = p.parse_args(argv)
    if "node" in args.components and args.worker_nodes < 2:
        p.error("killing a node needs --worker-nodes 2 or more (one to come back on)")
    if not 1 <= args.kills_per_component <= RAY_MAX_RESTARTS:
        p.error(
            f"--kills-per-component must be 1..{RAY_MAX_RESTARTS}: Ray restarts a service at "
            f"most {RAY_MAX_RESTARTS} times, one more kill would leave it dead"
        )
    return args


def report(result: dict[str, Any], record: bool) -> None:
    """Print the tables; with ``record`` write the JSON and the RESULTS.md section."""
    print(markdown(result))
    if record:
        nodes = "node" in result.get("config", {}).get("components", [])
        path, heading = (NODES_JSON, NODES_HEADING) if nodes else (RESULT_JSON, HEADING)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1, default=str))
        record_section(heading, section(result).replace(HEADING, heading, 1))
        log.info("wrote %s and the %r section of RESULTS.md", path, heading)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    if args.report_only:
        report(json.loads(RESULT_JSON.read_text()), record=not args.no_record)
        return 0
    command = "python -m benchmarks.chaos " + " ".join(argv if argv is not None else sys.argv[1:])
    started = datetime.now(UTC)
    host = machine()
    result = run(args)
    plan = len(args.components) * args.kills_per_component
    result.update(
        command=command.strip(),
        machine=host,
        date=started.strftime("%Y-%m-%d %H:%M UTC"),
        wall_s=round((datetime.now(UTC) - started).total_seconds()),
        config={
            "num_actors": args.actors,
            "tick_hz": args.tick_hz,
            "replay_size": args.replay_size,
            "replay_checkpoint_s": args.replay_checkpoint_s,
            "kills_per_component": args.kills_per_component,
            "components": args.components,
            "worker_nodes": args.worker_nodes,
            "interval_s": args.seconds / (plan + 1),
            "grace_s": args.grace,
            "seconds": args.seconds,
        },
    )
    report(result, record=not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
