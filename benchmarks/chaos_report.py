"""The chaos run's tables: kills, recoveries, loss and overruns, as markdown for stdout and for
the ``## Chaos run`` section of ``benchmarks/RESULTS.md``."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.chaos_audit import COMPONENTS

HEADING = "## Chaos run"


def _fmt(value: Any) -> str:
    return "-" if value is None else str(value)


def kills_table(kills: list[dict], start: float) -> list[str]:
    head = "| # | component | at (s) | pid | healthy again after (s) | new heartbeat after (s) |"
    lines = [head + " details |", "|---|---|---|---|---|---|---|"]
    for i, k in enumerate(kills, 1):
        b, a = k["before"], k["after"]
        if k["component"] == "replay":
            detail = f"{b.get('size')} items at the kill, {a.get('size')} when serving again"
        elif k["component"] in ("learner", "node"):
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
    for c in [c for c in COMPONENTS if any(k["component"] == c for k in kills)]:
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


KILLED = {
    "replay": "the replay server",
    "reward": "the reward replica",
    "learner": "the learner",
    "node": "the worker node running the learner (every process of it; a fresh node joins "
    "after each recovery)",
}


def section(result: dict[str, Any]) -> str:
    cfg = result["config"]
    parts = [KILLED[c] for c in cfg.get("components", ["replay", "reward", "learner"])]
    what = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    nodes = cfg.get("worker_nodes", 0)
    where = ""
    if nodes:
        where = (f" The learner and the reward replica run on {nodes} worker nodes with their "
                 "own HOME and run directory; replay and the actors on the head.")  # fmt: skip
    setup = (
        f"Preset `smoke` ({cfg['num_actors']} simulated actors at {cfg['tick_hz']:g} Hz, one "
        f"reward replica, replay table of {cfg['replay_size']} items checkpointed every "
        f"{cfg['replay_checkpoint_s']:g} s), {result['chaos_seconds']:.0f} s of chaos "
        f"({result.get('wall_s', '?')} s in all, start and stop included): `kill -9` of "
        f"{what}, round-robin, "
        f"{cfg['kills_per_component']} times each, one every {cfg['interval_s']:.0f} s or, when "
        f"the previous one took longer to recover, right after it (Ray restarts them; the "
        f"actors and the Ray head are not killed).{where}"
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
