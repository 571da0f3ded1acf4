"""The chaos run's accounting: what replay holds at the end against what the actors produced,
recovery times from the heartbeats, actor tick overruns in and out of faults
(``benchmarks/chaos.py`` runs the cluster and the kills)."""

from __future__ import annotations

import argparse
import itertools
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.cluster_run import Cluster

COMPONENTS = ("replay", "reward", "learner", "node")
"""What the chaos run can kill: a service (SIGKILL to its process) or the worker node that
runs the learner (every process of that node: deploy/nodes.py)."""
"""What the chaos run kills, round-robin."""


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
        MARKER_MAC_TABLE,
        MARKER_TABLE,
        ONLINE_TABLE,
        VERSION_TABLE,
        WEIGHTS_TABLE,
    )

    names = (ONLINE_TABLE, WEIGHTS_TABLE, VERSION_TABLE, MARKER_TABLE, MARKER_MAC_TABLE)
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


def heartbeat_recovery(samples: list[dict], kill: Kill) -> dict[str, float | None]:
    """From the sampled heartbeats: the new process's first beat (replay, learner) and, for the
    learner, its first beat showing a new update."""
    if kill.component == "reward":
        return {}
    name = "learner" if kill.component == "node" else kill.component  # the node's learner
    beats = sorted(
        {
            float(s[name]["time"]): s[name]
            for s in samples
            if s.get(name)
            and s[name].get("pid") != kill.pid
            and float(s[name].get("time", 0)) > kill.at
        }.items()
    )
    if not beats:
        return {"heartbeat_s": None}
    first_t, first = beats[0]
    out: dict[str, float | None] = {"heartbeat_s": round(first_t - kill.at, 1)}
    if name == "learner":
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
