"""The success-classifier dataset built from demos and failure rollouts (the paper's recipe).

Labels: the last ``cfg.positive_frames`` frames of every target forward and reset demo (and of
prior demos when ``cfg.include_prior``) are "yes"; every other frame of those demos and every
frame of a failure rollout is "no". Each frame is paired with the question of its own
episode's task. Episodes are split (per kind, seeded) into train and held-out sets, so no
episode contributes frames to both.

Episode ids are ``"<group>/<index>"`` with group the dataset file stem (``target``,
``failures``, ``prior``) and index the episode's position in that file.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from robofume.config.reward import RewardConfig
from robofume.questions import question_for
from robofume.types import Episode

log = logging.getLogger(__name__)

POSITIVE_KINDS = ("target_forward", "target_reset")
GROUP_FILES = {"target": "target.hdf5", "failures": "failures.hdf5", "prior": "prior.hdf5"}


@dataclasses.dataclass
class ClassifierData:
    """Frames with yes/no labels and questions; one row per frame."""

    images: np.ndarray
    """uint8 (N, H, W, 3)."""
    labels: np.ndarray
    """float32 (N,): 1 = yes, 0 = no (the paper's labelling rule)."""
    questions: list[str]
    """The question of each frame's episode task."""
    episode: np.ndarray
    """int (N,) index into ``episode_ids``."""
    frame: np.ndarray
    """int (N,) frame index within its episode."""
    success: np.ndarray
    """bool (N,) simulator ground-truth success of the frame (False when unknown)."""
    episode_ids: list[str]
    episode_kinds: list[str]
    episode_tasks: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, rows: np.ndarray) -> ClassifierData:
        rows = np.asarray(rows)
        return dataclasses.replace(
            self,
            images=self.images[rows],
            labels=self.labels[rows],
            questions=[self.questions[i] for i in rows],
            episode=self.episode[rows],
            frame=self.frame[rows],
            success=self.success[rows],
        )

    def for_episodes(self, ids: Sequence[str]) -> ClassifierData:
        """The rows of the named episodes (unknown ids are ignored)."""
        names = set(ids)
        wanted = [i for i, e in enumerate(self.episode_ids) if e in names]
        return self.subset(np.flatnonzero(np.isin(self.episode, wanted)))

    def kinds(self) -> np.ndarray:
        """The episode kind of each row."""
        return np.asarray(self.episode_kinds, dtype=object)[self.episode]

    @property
    def task_questions(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for i, q in zip(self.episode, self.questions, strict=True):
            out.setdefault(self.episode_tasks[i], q)
        return out

    def summary(self) -> dict[str, int]:
        return {
            "frames": len(self),
            "yes": int(self.labels.sum()),
            "no": int(len(self) - self.labels.sum()),
            "episodes": len(set(self.episode.tolist())),
        }


def label_frames(episode: Episode, cfg: RewardConfig) -> np.ndarray | None:
    """Float32 (T+1,) labels of an episode's frames, or None when it is not training data."""
    n = episode.images.shape[0]
    if episode.kind == "failure":
        return np.zeros(n, np.float32)
    if episode.kind in POSITIVE_KINDS or (episode.kind == "prior" and cfg.include_prior):
        labels = np.zeros(n, np.float32)
        labels[max(0, n - cfg.positive_frames) :] = 1.0
        return labels
    return None


def frame_success(episode: Episode) -> np.ndarray:
    """Bool (T+1,) ground truth per frame: frame t+1 is ``success[t]``; frame 0 is False."""
    return np.concatenate([[False], np.asarray(episode.success, bool)])


def build_dataset(
    groups: Mapping[str, Sequence[Episode]],
    cfg: RewardConfig,
    questions: Mapping[str, str] | None = None,
) -> ClassifierData:
    """Label every usable episode of ``groups`` (e.g. ``{"target": [...], "failures": [...]}``).

    ``questions`` (task -> question) pins the questions, e.g. to a checkpoint's.
    """
    images, labels, qs, ep_idx, frames, success = [], [], [], [], [], []
    ids, kinds, tasks = [], [], []
    cache: dict[str, str] = {}
    not_successful = 0
    for group, episodes in groups.items():
        for i, ep in enumerate(episodes):
            lab = label_frames(ep, cfg)
            if lab is None:
                continue
            if ep.task not in cache:
                if questions and ep.task in questions:
                    cache[ep.task] = questions[ep.task]
                else:
                    cache[ep.task] = question_for(ep.task, cfg, instruction=ep.language)
            if ep.kind != "failure" and len(ep.success) and not bool(ep.success[-1]):
                not_successful += 1
            n = len(lab)
            images.append(ep.images)
            labels.append(lab)
            qs += [cache[ep.task]] * n
            ep_idx.append(np.full(n, len(ids)))
            frames.append(np.arange(n))
            success.append(frame_success(ep))
            ids.append(f"{group}/{i}")
            kinds.append(ep.kind)
            tasks.append(ep.task)
    if not ids:
        raise ValueError(
            "no classifier training data: need target_forward/target_reset demos or failure "
            f"episodes (groups given: {sorted(groups)})"
        )
    shapes = {im.shape[1:] for im in images}
    if len(shapes) > 1:
        raise ValueError(f"episodes have different image shapes {sorted(shapes)}")
    if not_successful:
        log.warning(
            "%d demos do not end in a success frame; their last %d frames are labelled yes "
            "anyway (the labelling rule)",
            not_successful,
            cfg.positive_frames,
        )
    return ClassifierData(
        images=np.concatenate(images),
        labels=np.concatenate(labels).astype(np.float32),
        questions=qs,
        episode=np.concatenate(ep_idx),
        frame=np.concatenate(frames),
        success=np.concatenate(success).astype(bool),
        episode_ids=ids,
        episode_kinds=kinds,
        episode_tasks=tasks,
    )


def near_success(data: ClassifierData, frames: int) -> np.ndarray:
    """Bool (N,): the last ``frames`` "no" frames before the "yes" frames of each demo."""
    if frames <= 0 or len(data) == 0:
        return np.zeros(len(data), bool)
    first_yes = np.full(len(data.episode_ids), np.iinfo(np.int64).max)
    yes = data.labels > 0.5
    np.minimum.at(first_yes, data.episode[yes], data.frame[yes])
    start = first_yes[data.episode] - frames
    return ~yes & (data.frame >= start) & (data.frame < first_yes[data.episode])


def paired_task(task: str) -> str | None:
    """The reset task of a forward task and the other way round (None: no pair known)."""
    from robofume.tasks import get_task

    try:
        return get_task(task).pair
    except (KeyError, ValueError):
        return None


def with_hard_negatives(data: ClassifierData) -> ClassifierData:
    """``data`` plus each "yes" frame asked with its paired task's question, labelled "no".

    A forward demo's success frame (the object in its bin) is where the reset task starts, and
    the reset demo's success frame (the object back in the centre) is where the forward task
    starts: asked the other task's question, the answer is "no". Such rows differ from a
    "yes" row only in the question, so the model cannot answer from the arm's pose or from a
    finished-looking motion; it has to find the object. Rows keep their episode, so an
    episode split stays clean. Tasks without a known pair add nothing.
    """
    questions = data.task_questions
    asked = {t: questions.get(paired_task(t) or "") for t in set(data.episode_tasks)}
    rows, new_questions = [], []
    for i in np.flatnonzero(data.labels > 0.5):
        question = asked[data.episode_tasks[data.episode[i]]]
        if question is not None:
            rows.append(i)
            new_questions.append(question)
    if not rows:
        return data
    extra = data.subset(np.asarray(rows))
    return dataclasses.replace(
        data,
        images=np.concatenate([data.images, extra.images]),
        labels=np.concatenate([data.labels, np.zeros(len(rows), np.float32)]),
        questions=[*data.questions, *new_questions],
        episode=np.concatenate([data.episode, extra.episode]),
        frame=np.concatenate([data.frame, extra.frame]),
        success=np.concatenate([data.success, np.zeros(len(rows), bool)]),
    )


def split_episodes(
    data: ClassifierData, fraction: float, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split episode ids into (train, held-out), per kind, at least one of each when possible."""
    rng = np.random.default_rng(seed)
    train: list[str] = []
    heldout: list[str] = []
    for kind in sorted(set(data.episode_kinds)):
        ids = [e for e, k in zip(data.episode_ids, data.episode_kinds, strict=True) if k == kind]
        order = rng.permutation(len(ids))
        n_held = round(fraction * len(ids))
        if fraction > 0 and len(ids) >= 2:
            n_held = min(max(n_held, 1), len(ids) - 1)
        heldout += [ids[i] for i in order[:n_held]]
        train += [ids[i] for i in order[n_held:]]
    return sorted(train), sorted(heldout)


def split_three(
    data: ClassifierData, val_fraction: float, heldout_fraction: float, seed: int = 0
) -> tuple[list[str], list[str], list[str]]:
    """(train, validation, held-out) episode ids, per kind; fractions of all episodes."""
    rest, heldout = split_episodes(data, heldout_fraction, seed)
    if val_fraction <= 0:
        return rest, [], heldout
    names = set(rest)
    ids = [e for e in data.episode_ids if e in names]
    kinds = [k for e, k in zip(data.episode_ids, data.episode_kinds, strict=True) if e in names]
    view = dataclasses.replace(data, episode_ids=ids, episode_kinds=kinds)
    train, val = split_episodes(view, val_fraction / max(1e-9, 1.0 - heldout_fraction), seed + 1)
    return train, val, heldout


def load_groups(data_dir: str | Path, cfg: RewardConfig) -> dict[str, list[Episode]]:
    """Read the dataset files the classifier uses (prior only with ``cfg.include_prior``)."""
    from robofume.data import DatasetError, read_episodes

    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(root, "dataset directory does not exist")
    wanted = ["target", "failures"] + (["prior"] if cfg.include_prior else [])
    groups: dict[str, list[Episode]] = {}
    for group in wanted:
        path = root / GROUP_FILES[group]
        if not path.exists():
            if group == "failures":
                log.warning("%s is missing: training without failure images", path)
                continue
            raise DatasetError(path, f"missing (needed for the reward model's {group} frames)")
        groups[group] = read_episodes(path)
    return groups


def load_classifier_data(
    data_dir: str | Path, cfg: RewardConfig, questions: Mapping[str, str] | None = None
) -> ClassifierData:
    """Read ``data_dir`` and build the labelled classifier dataset."""
    data = build_dataset(load_groups(data_dir, cfg), cfg, questions)
    log.info("classifier data from %s: %s", data_dir, data.summary())
    return data
