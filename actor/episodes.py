"""Episode records of the reset-free loop: built tick by tick, labelled late, split at success.

A *segment* is everything the robot did under one instruction (forward or reset), from the
tick the instruction was given to the tick it was switched (or a human reset it). Labels from
the reward model arrive asynchronously, keyed by the global step id of each transition, so a
segment can be closed before all of its labels are known.

Termination policy (label lag): the loop switches the instruction at the first tick where an
*already returned* label says success. Labels usually return within the 200 ms tick (label lag
0), but when they are late the robot has taken a few more steps under the old instruction.
Nothing is dropped: when a segment is finalised (all labels known) it is split after every
step labelled success. The first piece is the episode (terminal at its success step, so its
Monte-Carlo returns do not bootstrap past it); the rest are *tail* episodes of the same task,
each also terminal at its own success label or, when it ends without one, treated like a
timeout (return after the last step = 0, a valid lower bound since rewards are >= 0). Tail
transitions keep the instruction they were actually executed under, so no action is ever
attributed to an instruction the policy did not see; the next segment (the other
instruction) starts from the robot's current observation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robofume.data import mc_returns
from robofume.types import Episode


@dataclass
class Segment:
    """Transitions under one instruction; labels may be missing (NaN) until they arrive."""

    seq: int
    """Order of the segment in this actor's stream (delivery keeps it)."""
    task: str
    language: str
    images: list[np.ndarray]
    proprio: list[np.ndarray]
    actions: list[np.ndarray] = field(default_factory=list)
    step_ids: list[int] = field(default_factory=list)
    gt_success: list[bool] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    """P(yes) of obs t+1 per step (NaN: not returned yet)."""
    decisions: list[float] = field(default_factory=list)
    """1.0 success, 0.0 not, NaN not returned yet."""
    meta: dict = field(default_factory=dict)
    close_reason: str = ""
    closed_at: float = 0.0
    """time.monotonic() when the segment was closed (0 while open)."""
    pieces_delivered: int = 0
    """Pieces already written to replay (so a retry never writes one twice)."""
    success_frames: int = 1
    """Consecutive frames labelled success that count as one success (``actor.success_frames``)."""

    def __len__(self) -> int:
        return len(self.actions)

    def add(
        self,
        action: np.ndarray,
        image: np.ndarray,
        proprio: np.ndarray,
        step_id: int,
        gt_success: bool,
    ) -> int:
        """Append the transition (obs t, action) -> obs t+1; returns its index in the segment."""
        self.actions.append(np.asarray(action, dtype=np.float32))
        self.images.append(np.asarray(image, dtype=np.uint8))
        self.proprio.append(np.asarray(proprio, dtype=np.float32))
        self.step_ids.append(int(step_id))
        self.gt_success.append(bool(gt_success))
        self.probs.append(float("nan"))
        self.decisions.append(float("nan"))
        return len(self.actions) - 1

    def set_label(self, index: int, prob: float, decision: bool) -> None:
        self.probs[index] = float(prob)
        self.decisions[index] = 1.0 if decision else 0.0

    def missing(self) -> list[int]:
        """Indices of steps whose label has not arrived."""
        return [i for i, d in enumerate(self.decisions) if np.isnan(d)]

    def first_success(self) -> int | None:
        """Index of the first step where the success rule fired so far, if any."""
        fired = np.flatnonzero(success_steps(np.asarray(self.decisions), self.success_frames))
        return int(fired[0]) if len(fired) else None


def success_steps(decisions: np.ndarray, frames: int = 1) -> np.ndarray:
    """bool (T,): where the success rule fires, after ``frames`` consecutive success labels.

    One false-positive frame then ends nothing; the run count restarts after each firing
    (and at an unknown, NaN, label).

    >>> success_steps(np.array([1., 0., 1., 1., 1., 1.]), 2).astype(int).tolist()
    [0, 0, 0, 1, 0, 1]
    """
    if frames < 1:
        raise ValueError(f"success_frames must be >= 1, got {frames}")
    fired = np.zeros(len(decisions), dtype=bool)
    run = 0
    for i, d in enumerate(decisions):
        run = run + 1 if d == 1.0 else 0
        if run == frames:
            fired[i] = True
            run = 0
    return fired


def split_points(decisions: np.ndarray, frames: int = 1) -> list[tuple[int, int, bool]]:
    """Pieces ``(start, stop, terminal)`` of a fully labelled segment, split after each step
    where the success rule fires (``frames`` consecutive success labels).

    >>> split_points(np.array([0., 1., 1., 0.]))
    [(0, 2, True), (2, 3, True), (3, 4, False)]
    """
    pieces: list[tuple[int, int, bool]] = []
    start = 0
    for i, fired in enumerate(success_steps(decisions, frames)):
        if fired:
            pieces.append((start, i + 1, True))
            start = i + 1
    if start < len(decisions):
        pieces.append((start, len(decisions), False))
    return pieces


def finalize(segment: Segment, discount: float, kind: str = "online") -> list[Episode]:
    """Turn a fully labelled segment into episodes with rewards, terminals and MC returns.

    Rewards follow the success rule on the reward model's decisions (sparse r_t = 1 where
    ``segment.success_frames`` consecutive frames up to obs t+1 were judged a success);
    ground-truth success is kept in ``success`` for evaluation only.
    """
    if segment.missing():
        raise ValueError(
            f"segment {segment.seq} ({segment.task}) still misses labels for steps "
            f"{[segment.step_ids[i] for i in segment.missing()][:10]}"
        )
    decisions = np.asarray(segment.decisions, dtype=np.float32)
    images = np.stack(segment.images)
    proprio = np.stack(segment.proprio)
    actions = np.stack(segment.actions) if segment.actions else np.zeros((0, 0), np.float32)
    probs = np.asarray(segment.probs, dtype=np.float32)
    gt = np.asarray(segment.gt_success, dtype=bool)
    episodes = []
    fired = success_steps(decisions, segment.success_frames).astype(np.float32)
    for n, (a, b, terminal) in enumerate(split_points(decisions, segment.success_frames)):
        rewards = fired[a:b].copy()
        terminals = np.zeros(b - a, dtype=bool)
        terminals[-1] = terminal
        meta = dict(segment.meta)
        meta.update(
            seq=segment.seq,
            piece=n,
            tail=n > 0,
            close_reason=segment.close_reason if b == len(decisions) else "success",
            first_step_id=segment.step_ids[a],
        )
        episodes.append(
            Episode(
                images=images[a : b + 1],
                proprio=proprio[a : b + 1],
                actions=actions[a:b],
                rewards=rewards,
                terminals=terminals,
                success=gt[a:b],
                task=segment.task,
                language=segment.language,
                kind=kind,  # type: ignore[arg-type]
                mc_returns=mc_returns(rewards, terminals, discount),
                labels=probs[a:b],
                meta=meta,
            )
        )
    return episodes


_ARRAYS = ("images", "proprio", "actions", "step_ids", "gt_success", "probs", "decisions")


def save_segment(segment: Segment, path: Path) -> Path:
    """Spill a segment (labelled or not) to ``path`` (.npz); written atomically."""
    arrays = {
        "images": np.stack(segment.images),
        "proprio": np.stack(segment.proprio),
        "actions": np.asarray(segment.actions, dtype=np.float32).reshape(len(segment), -1),
        "step_ids": np.asarray(segment.step_ids, dtype=np.int64),
        "gt_success": np.asarray(segment.gt_success, dtype=bool),
        "probs": np.asarray(segment.probs, dtype=np.float32),
        "decisions": np.asarray(segment.decisions, dtype=np.float32),
    }
    header = {
        "seq": segment.seq,
        "task": segment.task,
        "language": segment.language,
        "meta": segment.meta,
        "close_reason": segment.close_reason,
        "pieces_delivered": segment.pieces_delivered,
        "success_frames": segment.success_frames,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, header=np.asarray(json.dumps(header, default=str)), **arrays)
    tmp.replace(path)
    return path


def load_segment(path: Path) -> Segment:
    """Read a spilled segment; a clear error names the file and the missing key."""
    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
            arrays = {k: data[k] for k in _ARRAYS if k in files}
            header = json.loads(str(data["header"])) if "header" in files else None
    except (OSError, EOFError, ValueError) as err:  # ValueError: not an npz / bad JSON
        raise ValueError(f"spilled episode {path} is unreadable: {err}") from err
    missing = [k for k in _ARRAYS if k not in arrays] + (["header"] if header is None else [])
    if missing:
        raise ValueError(f"spilled episode {path}: missing arrays {missing}")
    n = arrays["actions"].shape[0]
    if arrays["images"].shape[0] != n + 1 or arrays["decisions"].shape[0] != n:
        raise ValueError(
            f"spilled episode {path}: images {arrays['images'].shape} / decisions "
            f"{arrays['decisions'].shape} inconsistent with {n} actions"
        )
    return Segment(
        seq=int(header["seq"]),
        task=header["task"],
        language=header["language"],
        images=list(arrays["images"]),
        proprio=list(arrays["proprio"]),
        actions=list(arrays["actions"]),
        step_ids=[int(s) for s in arrays["step_ids"]],
        gt_success=[bool(s) for s in arrays["gt_success"]],
        probs=[float(p) for p in arrays["probs"]],
        decisions=[float(d) for d in arrays["decisions"]],
        meta=header.get("meta", {}),
        close_reason=header.get("close_reason", ""),
        closed_at=0.0,
        pieces_delivered=int(header.get("pieces_delivered", 0)),
        success_frames=int(header.get("success_frames", 1)),
    )
