"""The run directory: where every process of one deployment reads and writes, defined once.

```
<deploy.run_dir>/
  config.yaml           the resolved config `up` runs with
  up.json               what `up` started (pids), for `down`
  auth/secret           the deployment secret (robofume.auth; deploy.secret_path moves it)
  ray/auth_token        the Ray cluster's token (robofume.ray_auth; deploy.ray_token_path)
  status/<name>.json    heartbeats (robofume.status)
  logs/                 the phase runner's and TensorBoard's logs
  phases/<phase>.json   progress of the phase subprocesses
  reward/               the fine-tuned reward model
  pretrain/             offline pre-training: checkpoints/, tb/
  online/checkpoints/   the online learner
  replay/               Reverb checkpoints (replay.checkpoint_dir moves them)
  spill/<actor>/        episodes an actor has not delivered yet (actor.spill_dir moves them)
  tb/<session>/<component>/  TensorBoard event files: one folder per `up`, one per component
  data/                 a node away from the head: its copy of the offline dataset
```
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from robofume.config import ExperimentConfig


@dataclass(frozen=True)
class RunDir:
    root: Path
    replay: Path
    """Reverb checkpoints."""
    spill_root: Path
    """Parent of each actor's spill folder."""
    session: str = ""
    """The `up` this process belongs to (``deploy.session``): its TensorBoard runs are
    ``tb/<session>/<component>``, so each `up` is its own set of runs."""

    @classmethod
    def at(cls, root: str | Path) -> RunDir:
        """The default layout under ``root``."""
        root = Path(root)
        return cls(root, root / "replay", root / "spill")

    @classmethod
    def of(cls, cfg: ExperimentConfig) -> RunDir:
        """The layout ``cfg`` asks for (``deploy.run_dir`` and the folders moved elsewhere)."""
        base = cls.at(cfg.deploy.run_dir)
        return cls(
            base.root,
            Path(cfg.replay.checkpoint_dir) if cfg.replay.checkpoint_dir else base.replay,
            Path(cfg.actor.spill_dir) if cfg.actor.spill_dir else base.spill_root,
            cfg.deploy.session,
        )

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def up_state(self) -> Path:
        return self.root / "up.json"

    @property
    def secret(self) -> Path:
        return self.root / "auth" / "secret"

    @property
    def ray_token(self) -> Path:
        return self.root / "ray" / "auth_token"

    @property
    def status(self) -> Path:
        return self.root / "status"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def phases(self) -> Path:
        return self.root / "phases"

    @property
    def reward(self) -> Path:
        return self.root / "reward"

    @property
    def pretrain(self) -> Path:
        return self.root / "pretrain"

    @property
    def online(self) -> Path:
        return self.root / "online"

    @property
    def data(self) -> Path:
        """A node's copy of the offline dataset (robofume/node.py)."""
        return self.root / "data"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tb"

    def tb(self, component: str) -> Path:
        """One component's TensorBoard folder (``learner``, ``actor_0``, ``reward_0``...), in
        its session's folder when there is one."""
        return (
            self.tensorboard / self.session / component
            if self.session
            else self.tensorboard / component
        )

    def spill(self, actor: str) -> Path:
        return self.spill_root / actor
