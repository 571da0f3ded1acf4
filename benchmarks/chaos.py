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

    python -m benchmarks.chaos --seconds 450 --kills-per-component 3
    python -m benchmarks.chaos --report-only   # tables and section again from the saved JSON
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.cluster_run import (
    ROOT,
    Cluster,
    cluster_overrides,
    link_prepared,
    load_average,
    robofume,
    running_cluster,
)
from benchmarks.common import machine, record_section
from robofume.logs import setup_logging

log = logging.getLogger("benchmarks.chaos")

COMPONENTS = ("replay", "reward", "learner")
RAY_MAX_RESTARTS = 3
"""``max_restarts`` of the services and reward replicas (deploy/services.py, deploy/launch.py)."""
HEADING = "## Chaos run"
RESULT_JSON = ROOT / "benchmarks" / "results" / "chaos.json"


@dataclass
class Kill:
    """One SIGKILL and what followed it."""

    component: str
    pid: int
    at: float
    """Wall-clock time of the kill."""
    recovered_s: float | None = None
    """Seconds until healthy again as `robofume status` sees it (None: not within the limit)."""
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- preparation
def ensure_prepared(preset: str, source_run: Path, data_dir: Path) -> None:
    """Generate the dataset, fine-tune the reward model and pre-train the policy when missing."""
    from learner.checkpoint import latest_checkpoint

    reward, pretrain = str(source_run / "reward"), str(source_run / "pretrain")
    steps: list[tuple[bool, list[str]]] = [
        (
            (data_dir / "manifest.json").exists(),
            ["generate", "--preset", preset, "--out", str(data_dir)],
        ),
        (
            any((source_run / "reward").glob("model*")),
            ["reward", "finetune", "--preset", preset, "--data", str(data_dir), "--out", reward],
        ),
        (
            latest_checkpoint(source_run / "pretrain" / "checkpoints") is not None,
            ["pretrain", "--preset", preset, "--data", str(data_dir), "--out", pretrain],
        ),
    ]
    for ready, args in steps:
        if ready:
            continue
        log.info("preparing: robofume %s", " ".join(args))
        out = robofume(*args, timeout=1800)
        if out.returncode != 0:
            raise RuntimeError(f"robofume {args[0]} failed:\n{out.stderr[-3000:]}")


# ----------------------------------------------------------------------------- the cluster
def run_config(run_dir: Path) -> Any:
    """The resolved config `robofume up` wrote into the run directory."""
    from robofume.config import load_config

    return load_config(config_path=run_dir / "config.yaml")


def wait_ready(cluster: Cluster, num_actors: int, timeout_s: float) -> None:
    """Until replay, learner and every actor beat and the actors step; raises on a failure."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        beats = cluster.sample()
        runner = beats.get("phases") or {}
        if runner.get("state") == "failed":
            raise RuntimeError(f"the phase runner failed: {runner.get('phases')}")
        actors = [beats.get(f"actor_{i}") or {} for i in range(num_actors)]
        stepping = all(a.get("state") == "running" and a.get("steps", 0) > 0 for a in actors)
        if stepping and beats.get("learner") and beats.get("replay"):
            log.info("cluster ready: %d actors stepping, learner and replay beating", num_actors)
            return
        time.sleep(3.0)
    raise TimeoutError(f"the cluster was not ready within {timeout_s:.0f} s")


def session_pids(cfg: Any) -> set[int]:
    """PIDs of this run's Ray head and its workers (no other Ray instance on the machine)."""
    from deploy.cluster import head_processes

    return {p.pid for p in head_processes(cfg.deploy)}


def reward_pid(cfg: Any) -> int | None:
    """The reward replica's Ray worker (``ray::RewardReplica``) in this run's session."""
    import psutil

    found = []
    for pid in session_pids(cfg):
        try:
            title = " ".join(psutil.Process(pid).cmdline())
        except psutil.Error:
            continue
        if title.startswith("ray::RewardReplica"):
            found.append(pid)
    return found[0] if len(found) == 1 else None


def component_pid(cfg: Any, cluster: Cluster, component: str) -> int | None:
    """The live PID of ``component`` (replay and learner: their heartbeat's ``pid``)."""
    if component == "reward":
        return reward_pid(cfg)
    pid = int((cluster.statuses().get(component) or {}).get("pid") or 0)
    return pid if pid in session_pids(cfg) else None


def wait_gone(pid: int, timeout_s: float = 10.0) -> None:
    import psutil

    try:
        psutil.Process(pid).wait(timeout=timeout_s)
    except psutil.NoSuchProcess:
        return
    except psutil.TimeoutExpired:
        log.warning("pid %d still there %.0f s after SIGKILL", pid, timeout_s)


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
        plan = [c for _ in range(self.args.kills_per_component) for c in COMPONENTS]
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

    def live_pid(self, component: str, timeout_s: float = 30.0) -> int | None:
        """The component's PID, waiting a little for a restarted process's first heartbeat."""
        deadline = time.monotonic() + timeout_s
        while (pid := component_pid(self.cfg, self.cluster, component)) is None:
            if time.monotonic() > deadline:
                return None
            self.tick()
            time.sleep(1.0)
        return pid

    def kill(self, component: str) -> Kill | None:
        pid = self.live_pid(component)
        if pid is None:
            log.error("%s: no live pid in this run's Ray session; not killed", component)
            return None
        before = self.state(component)
        os.kill(pid, signal.SIGKILL)
        kill = Kill(component, pid, time.time(), before=before)
        self.kills.append(kill)
        log.info("kill -9 %s (pid %d), load %.1f", component, pid, load_average())
        wait_gone(pid)
        self.wait_recovered(kill)
        return kill

    def state(self, component: str) -> dict[str, Any]:
        """What the component had just before the kill (to compare with after the restart)."""
        if component == "replay":
            return self.probes.replay() or {}
        if component == "learner":
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
def spill_counts(run_dir: Path) -> dict[str, dict[str, int]]:
    """Per actor: segments and transitions spilled at the stop (undelivered, kept for the next
    start), rejected ones, and delivered episodes kept in the outbox."""
    out: dict[str, dict[str, int]] = {}
    for folder in sorted((run_dir / "spill").glob("actor_*")):
        counts = {"spilled_segments": 0, "spilled_transitions": 0, "rejected_transitions": 0}
        for key, pattern in (("spilled", "seg_*.npz"), ("rejected", "rejected/seg_*.npz")):
            for path in folder.glob(pattern):
                with np.load(path) as data:
                    steps = int(data["step_ids"].size)
                counts[f"{key}_transitions"] += steps
                counts["spilled_segments"] += key == "spilled"
        counts["outbox_episodes"] = len(list((folder / "outbox").glob("ep_*.npz")))
        out[folder.name] = counts
    return out


def _patch_rate_limiter(tables_file: Path) -> None:
    """Let the restored ``online`` table be sampled without limit (its items stay untouched)."""
    import tensorflow as tf
    from reverb.cc.checkpointing import checkpoint_pb2

    from robofume.replay_client.tables import ONLINE_TABLE

    records = [
        checkpoint_pb2.PriorityTableCheckpoint.FromString(r)
        for r in tf.data.TFRecordDataset(
            str(tables_file), compression_type="ZLIB"
        ).as_numpy_iterator()
    ]
    with tf.io.TFRecordWriter(str(tables_file), options="ZLIB") as writer:
        for table in records:
            if table.table_name == ONLINE_TABLE:
                table.rate_limiter.min_diff = -np.finfo(np.float64).max
                table.rate_limiter.max_diff = np.finfo(np.float64).max
                table.rate_limiter.min_size_to_sample = 1
            writer.write(table.SerializeToString())


def _read_all_items(client: Any) -> dict[int, tuple[int, int]]:
    """Item key -> (episode_id, step) of every ``online`` item, sampling and deleting."""
    from robofume.replay_client.tables import ONLINE_TABLE

    info = client.server_info()[ONLINE_TABLE]
    columns = sorted(info.signature)  # the flattened signature's order
    seen: dict[int, tuple[int, int]] = {}
    while (size := client.server_info()[ONLINE_TABLE].current_size) > 0:
        fresh = []
        for sample in client.sample(ONLINE_TABLE, num_samples=min(512, size), emit_timesteps=False):
            key = int(np.asarray(sample.info.key).reshape(-1)[0])
            if key not in seen:
                row = dict(zip(columns, sample.data, strict=True))
                seen[key] = (int(row["episode_id"]), int(row["step"]))
                fresh.append(key)
        client.mutate_priorities(ONLINE_TABLE, deletes=fresh)
    return seen


def audit_replay(run_dir: Path, work: Path) -> dict[str, Any]:
    """Every item of the newest replay checkpoint: items, distinct transitions, duplicates.

    The checkpoint is copied, its ``online`` rate limiter lifted, restored into a private
    Reverb server and read to the last item (the run's own checkpoint stays as it was).
    """
    import reverb

    from replay.server import list_replay_checkpoints

    found = list_replay_checkpoints(run_dir / "replay")
    if not found:
        return {"error": f"no replay checkpoint under {run_dir / 'replay'}"}
    shutil.rmtree(work, ignore_errors=True)
    copy = work / found[-1].name
    shutil.copytree(found[-1], copy)
    _patch_rate_limiter(copy / "tables.tfrecord")
    from robofume.replay_client.tables import (
        MARKER_TABLE,
        ONLINE_TABLE,
        VERSION_TABLE,
        WEIGHTS_TABLE,
    )

    names = (ONLINE_TABLE, WEIGHTS_TABLE, VERSION_TABLE, MARKER_TABLE)
    tables = [reverb.Table.queue(name, 1) for name in names]  # replaced by the checkpoint's
    server = reverb.Server(tables, checkpointer=reverb.checkpointers.DefaultCheckpointer(str(work)))
    try:
        items = _read_all_items(reverb.Client(f"127.0.0.1:{server.port}"))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    transitions = set(items.values())
    return {
        "checkpoint": found[-1].name,
        "items": len(items),
        "distinct_transitions": len(transitions),
        "duplicate_items": len(items) - len(transitions),
        "distinct_episodes": len({eid for eid, _ in transitions}),
        "holes": holes(transitions),
    }


def holes(transitions: set[tuple[int, int]]) -> int:
    """Steps missing inside episodes (below an episode's last step present): single
    transitions deleted, as opposed to whole episodes never delivered."""
    last: dict[int, int] = {}
    count: dict[int, int] = {}
    for eid, step in transitions:
        last[eid] = max(last.get(eid, -1), step)
        count[eid] = count.get(eid, 0) + 1
    return sum(last[eid] + 1 - count[eid] for eid in last)


# ----------------------------------------------------------------------------- analysis
def heartbeat_recovery(samples: list[dict], kill: Kill) -> dict[str, float | None]:
    """From the sampled heartbeats: the new process's first beat (replay, learner) and, for the
    learner, its first beat showing a new update."""
    if kill.component == "reward":
        return {}
    beats = sorted(
        {
            float(s[kill.component]["time"]): s[kill.component]
            for s in samples
            if s.get(kill.component)
            and s[kill.component].get("pid") != kill.pid
            and float(s[kill.component].get("time", 0)) > kill.at
        }.items()
    )
    if not beats:
        return {"heartbeat_s": None}
    first_t, first = beats[0]
    out: dict[str, float | None] = {"heartbeat_s": round(first_t - kill.at, 1)}
    if kill.component == "learner":
        trained = [
            t for t, b in beats if b.get("online_updates", 0) > first.get("online_updates", 0)
        ]
        out["training_s"] = round(trained[0] - kill.at, 1) if trained else None
    return out


def fault_windows(kills: list[Kill], grace_s: float, end: float) -> list[tuple[float, float, str]]:
    return [
        (k.at, k.at + k.recovered_s + grace_s if k.recovered_s is not None else end, k.component)
        for k in kills
    ]


def overruns(
    samples: list[dict], windows: list[tuple[float, float, str]], start: float, end: float
) -> dict[str, dict[str, float]]:
    """Ticks and overruns per window kind ("none", a component, "any fault"), from the deltas
    between consecutive actor heartbeats inside [start, end]."""
    table: dict[str, dict[str, float]] = {}

    def add(kind: str, seconds: float, ticks: int, over: int) -> None:
        row = table.setdefault(kind, {"seconds": 0.0, "ticks": 0, "overruns": 0})
        row["seconds"] += seconds
        row["ticks"] += ticks
        row["overruns"] += over

    names = sorted({k for s in samples for k in s if k.startswith("actor_")})
    for name in names:
        beats = sorted({float(s[name]["time"]): s[name] for s in samples if s.get(name)}.items())
        for (t0, a), (t1, b) in itertools.pairwise(beats):
            if t0 < start or t1 > end or a.get("pid") != b.get("pid"):
                continue
            ticks = int(b.get("ticks", 0)) - int(a.get("ticks", 0))
            over = int(b.get("tick_overruns", 0)) - int(a.get("tick_overruns", 0))
            hits = [(min(t1, w1) - max(t0, w0), c) for w0, w1, c in windows if w0 < t1 and w1 > t0]
            kind = max(hits)[1] if hits else "none"
            add(kind, t1 - t0, ticks, over)
            if hits:
                add("any fault", t1 - t0, ticks, over)
    for row in table.values():
        row["per_1000_ticks"] = (
            round(1000 * row["overruns"] / row["ticks"], 1) if row["ticks"] else 0
        )
        row["seconds"] = round(row["seconds"], 1)
    return table


def learner_counter(samples: list[dict], key: str) -> dict[str, int]:
    """A learner heartbeat counter per learner process (it restarts with the process): its
    largest value in the sampled heartbeats."""
    per_pid: dict[str, int] = {}
    for s in samples:
        beat = s.get("learner") or {}
        if "pid" in beat and beat.get(key) is not None:
            pid = str(beat["pid"])
            per_pid[pid] = max(per_pid.get(pid, 0), int(beat[key]))
    return per_pid


def actor_totals(final: dict[str, dict]) -> dict[str, dict[str, Any]]:
    keys = (
        "steps",
        "ticks",
        "tick_overruns",
        "delivered_episodes",
        "redelivered_episodes",
        "replay_restarts_seen",
        "retained_episodes",
        "outbox_overflow",
        "pending_episodes",
        "rejected_episodes",
        "state",
    )
    return {
        name: {k: beat.get(k) for k in keys}
        for name, beat in sorted(final.items())
        if name.startswith("actor_")
    }


def summarize(
    cluster: Cluster, kills: list[Kill], window: tuple[float, float], args: argparse.Namespace
) -> dict[str, Any]:
    """Everything the report needs (the audit is added by the caller)."""
    final = cluster.samples[-1]
    actors = actor_totals(final)
    spill = spill_counts(cluster.run_dir)
    produced = sum(int(a.get("steps") or 0) for a in actors.values())
    undelivered = sum(c["spilled_transitions"] for c in spill.values())
    rejected = sum(c["rejected_transitions"] for c in spill.values())
    replay_beat = final.get("replay") or {}
    for kill in kills:
        kill.after.update(heartbeat_recovery(cluster.samples, kill))
    dupes = learner_counter(cluster.samples, "replay_duplicates_dropped")
    learner = final.get("learner") or {}
    return {
        "produced_transitions": produced,
        "undelivered_at_stop": undelivered,
        "rejected_transitions": rejected,
        "expected_in_replay": produced - undelivered - rejected,
        "replay_final_heartbeat": {
            k: replay_beat.get(k) for k in ("size", "inserts", "max_size", "checkpoints_completed")
        },
        "learner_duplicates_dropped": sum(dupes.values()),
        "learner_duplicates_dropped_per_process": dupes,
        "learner_final": {
            k: v
            for k, v in learner.items()
            if k in ("pid", "step", "online_updates", "utd_ratio") or k.startswith("replay_")
        },
        "actors": actors,
        "spill": spill,
        "kills": [asdict(k) for k in kills],
        "overruns": overruns(cluster.samples, fault_windows(kills, args.grace, window[1]), *window),
        "chaos_seconds": round(window[1] - window[0], 1),
        "load_mean": round(float(np.mean([s["load"] for s in cluster.samples])), 2),
    }


# ----------------------------------------------------------------------------- report
def _fmt(value: Any) -> str:
    return "-" if value is None else str(value)


def kills_table(kills: list[dict], start: float) -> list[str]:
    head = "| # | component | at (s) | pid | healthy again after (s) | new heartbeat after (s) |"
    lines = [head + " details |", "|---|---|---|---|---|---|---|"]
    for i, k in enumerate(kills, 1):
        b, a = k["before"], k["after"]
        if k["component"] == "replay":
            detail = f"{b.get('size')} items at the kill, {a.get('size')} when serving again"
        elif k["component"] == "learner":
            detail = f"last beat before: update {b.get('step')}; resumed at {a.get('step')}"
            if a.get("training_s") is not None:
                detail += f", training again after {a['training_s']} s"
        else:
            detail = ""
        lines.append(
            f"| {i} | {k['component']} | {k['at'] - start:.0f} | {k['pid']} | "
            f"{_fmt(k['recovered_s'])} | {_fmt(a.get('heartbeat_s'))} | {detail} |"
        )
    return lines


def recovery_table(kills: list[dict]) -> list[str]:
    lines = ["| component | kills | recovered | healthy again after, s (mean / max) |"]
    lines.append("|---|---|---|---|")
    for c in COMPONENTS:
        times = [k["recovered_s"] for k in kills if k["component"] == c]
        ok = [t for t in times if t is not None]
        span = f"{np.mean(ok):.1f} / {max(ok):.1f}" if ok else "-"
        lines.append(f"| {c} | {len(times)} | {len(ok)} | {span} |")
    return lines


def loss_table(result: dict[str, Any]) -> list[str]:
    audit = result.get("audit") or {}
    distinct = audit.get("distinct_transitions")
    expected = result["expected_in_replay"]
    actors = result["actors"].values()
    rows = [
        ("transitions produced by the actors (sum of `steps`)", result["produced_transitions"]),
        (
            "still held by the actors at the stop (spilled for the next start)",
            result["undelivered_at_stop"],
        ),
        ("refused by replay (kept under spill/rejected)", result["rejected_transitions"]),
        ("delivered, so expected in replay", expected),
        ("items in replay at the end (final checkpoint)", audit.get("items")),
        ("distinct transitions (episode_id, step) in replay", distinct),
        (
            "**lost** (expected minus distinct)",
            None if distinct is None else expected - distinct,
        ),
        (
            "of them missing inside an episode (steps absent below its last step)",
            audit.get("holes"),
        ),
        ("duplicate items left in replay", audit.get("duplicate_items")),
        (
            "items inserted (replay counter, restored with checkpoints)",
            result["replay_final_heartbeat"].get("inserts"),
        ),
        (
            "episodes delivered again by the actors",
            sum(a.get("redelivered_episodes") or 0 for a in actors),
        ),
        (
            "replay restarts seen by the actors (sum)",
            sum(a.get("replay_restarts_seen") or 0 for a in actors),
        ),
        (
            "outbox overflow (episodes forgotten)",
            sum(a.get("outbox_overflow") or 0 for a in actors),
        ),
        (
            "duplicate rows dropped by the learner's sampler (all its processes)",
            result["learner_duplicates_dropped"],
        ),
    ]
    lines = ["| quantity | value |", "|---|---|"]
    lines += [f"| {name} | {_fmt(value)} |" for name, value in rows]
    return lines


def overrun_table(table: dict[str, dict[str, float]]) -> list[str]:
    lines = ["| heartbeat intervals | seconds (all actors) | ticks | overruns | per 1000 ticks |"]
    lines.append("|---|---|---|---|---|")
    order = ["none", "any fault", *COMPONENTS]
    labels = {"none": "outside faults", "any fault": "during any fault"}
    for kind in order:
        if kind in table:
            row = table[kind]
            label = labels.get(kind, f"during a {kind} fault")
            lines.append(
                f"| {label} | {row['seconds']:.0f} | {row['ticks']} | {row['overruns']} | "
                f"{row['per_1000_ticks']} |"
            )
    return lines


def markdown(result: dict[str, Any]) -> str:
    start = result["chaos_start"]
    parts = [
        *loss_table(result),
        "",
        *recovery_table(result["kills"]),
        "",
        *kills_table(result["kills"], start),
        "",
        *overrun_table(result["overruns"]),
    ]
    return "\n".join(parts)


def section(result: dict[str, Any]) -> str:
    cfg = result["config"]
    setup = (
        f"Preset `smoke` ({cfg['num_actors']} simulated actors at {cfg['tick_hz']:g} Hz, one "
        f"reward replica, replay table of {cfg['replay_size']} items checkpointed every "
        f"{cfg['replay_checkpoint_s']:g} s), {result['chaos_seconds']:.0f} s of chaos "
        f"({result.get('wall_s', '?')} s in all, start and stop included): `kill -9` of the "
        f"replay server, the reward replica and the learner, round-robin, "
        f"{cfg['kills_per_component']} times each, one every {cfg['interval_s']:.0f} s or, when "
        f"the previous one took longer to recover, right after it (Ray restarts them; the "
        f"actors and the Ray head are not killed)."
    )
    terms = (
        "*Healthy again*: replay answers with a new epoch, the reward replica's gRPC health "
        "check says SERVING, the learner beats from its new process (what `robofume status` "
        "shows). Loss is counted item by item in the final replay checkpoint (written by "
        "`robofume down` after the actors flushed). Overruns: actor heartbeat intervals "
        f"overlapping a kill..recovery + {cfg['grace_s']:g} s window against the others. Mean "
        f"load average {result['load_mean']} during the run."
    )
    return (
        f"{HEADING}\n\n`{result['command']}` on {result['machine']}; {result['date']}.\n"
        f"{setup} {terms}\n\n{markdown(result)}\n"
    )


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
        *args.overrides,
    ]


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
    with running_cluster(run_dir, overrides) as cluster:
        wait_ready(cluster, args.actors, args.ready_timeout)
        cfg = run_config(run_dir)
        chaos = Chaos(cluster, cfg, args)
        log.info("replay before the chaos: %s", chaos.probes.replay())  # imports Reverb now
        chaos.idle_until(time.monotonic() + args.warmup)
        window = chaos.run()
        status_end = final_status(cluster)
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
        RESULT_JSON.parent.mkdir(parents=True, exist_ok=True)
        RESULT_JSON.write_text(json.dumps(result, indent=1, default=str))
        record_section(HEADING, section(result))
        log.info("wrote %s and the %r section of RESULTS.md", RESULT_JSON, HEADING)


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
    plan = 3 * args.kills_per_component
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
            "interval_s": args.seconds / (plan + 1),
            "grace_s": args.grace,
            "seconds": args.seconds,
        },
    )
    report(result, record=not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
