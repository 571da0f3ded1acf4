"""The Cal-QL + BC learner: one update on a batch dict, the same offline and online.

```python
learner = Learner(cfg, batch_source=lambda: buffer.sample(cfg.learner.batch_size))
metrics = learner.step()          # dict[str, 0-d tensor] (no host sync)
learner.run(1000)
variables = learner.get_variables()   # flat dict of numpy arrays for actors
learner.save(path); learner.restore(path)
```

``update(batch)`` does not care where the batch came from (offline buffer, Reverb sampler, or a
mix of both). Metrics stay on the device; ``check_finite()`` syncs once to detect NaN/inf
losses, recording the first bad update and which terms were bad.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learner import losses
from learner.agent import Agent, resolve_algorithm, resolve_device
from learner.finite import LOSS_TERMS, FiniteWatch
from robofume.config import ExperimentConfig
from robofume.networks import (
    NoEncoder,
    random_shift,
    sample_tanh_gaussian,
    tanh_gaussian_log_prob,
)
from robofume.types import BC_ROWS

log = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]


class Learner:
    """Holds the agent, its optimisers and RNG; ``update(batch)`` is one gradient step."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        batch_source: Callable[[], Batch] | None = None,
        task_table: np.ndarray | torch.Tensor | None = None,
        device: str | torch.device | None = None,
    ):
        self.cfg = cfg
        lc = cfg.learner
        self.algo = resolve_algorithm(lc)
        self.device = torch.device(device) if device is not None else resolve_device(lc.device)
        self.batch_source = batch_source
        if task_table is None:
            from robofume.tasks import task_table as tasks_of
            from robofume.text import default_task_table

            task_table = default_task_table(cfg.network.text_encoder, tasks_of(cfg))
        table = torch.as_tensor(np.asarray(task_table), dtype=torch.float32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(lc.seed)
            self.agent = Agent(cfg, table)
        self.agent.to(self.device)
        if lc.channels_last:
            self.agent.to(memory_format=torch.channels_last)
        a = self.agent
        if self.device.type == "cuda" and lc.tf32:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        fused = {"fused": True} if self.device.type == "cuda" else {}
        if self.algo.rl:
            self.critic_opt = torch.optim.Adam(a.critic_parameters(), lr=lc.critic_lr, **fused)
            actor_params = list(a.policy.parameters())
        else:  # BC: the encoder learns through the BC loss
            self.critic_opt = None
            actor_params = [*a.encoder.parameters(), *a.policy.parameters()]
        self.actor_opt = torch.optim.Adam(actor_params, lr=lc.actor_lr, **fused)
        self.actor_params = actor_params
        self.alpha_opt = torch.optim.Adam([a.log_alpha], lr=lc.alpha_lr)
        self.cql_alpha_opt = torch.optim.Adam([a.log_cql_alpha], lr=lc.cql_lagrange_lr)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(lc.seed + 1)
        self.num_updates = 0
        self.target_entropy = -float(cfg.env.action_dim)
        self.finite = FiniteWatch(self.device)
        self._encode = a.encoder
        self._encode_target = a.target_encoder
        self._critic = a.critic
        self._target_critic = a.target_critic
        self._policy = a.policy
        if lc.compile:
            self._encode = torch.compile(a.encoder)
            self._encode_target = torch.compile(a.target_encoder)
            self._critic = torch.compile(a.critic)
            self._target_critic = torch.compile(a.target_critic)
            self._policy = torch.compile(a.policy)

    # ------------------------------------------------------------------ the update

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.cfg.learner.amp_bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def _noise(self, *shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.device)

    def _augment(self, images: torch.Tensor) -> torch.Tensor:
        net = self.cfg.network
        if not net.augmentation or isinstance(self.agent.encoder, NoEncoder):
            return images
        return random_shift(images, net.shift_pad, self.generator)

    def compute_losses(
        self, batch: Batch
    ) -> tuple[dict[str, torch.Tensor | None], dict[str, torch.Tensor]]:
        """The loss graph of one update: ({critic, actor, alpha, cql_multiplier}, metrics).

        ``critic`` (TD + CQL) trains the encoder and critics; ``actor`` the policy only (it sees
        detached features; with ``algorithm: bc`` the encoder too); ``alpha`` the temperature;
        ``cql_multiplier`` the Lagrange CQL weight. Absent terms are None.
        """
        lc, algo, a = self.cfg.learner, self.algo, self.agent
        action = batch["action"].float()
        b, act_dim = action.shape
        task = batch["task"]  # (B,) int64
        metrics: dict[str, torch.Tensor] = {}
        zero = torch.zeros((), device=self.device)
        with self._autocast():
            image = self._augment(batch["image"])
            state = a.state(self._encode(image), task, batch["proprio"])  # (B, S)
            actor_state = state.detach() if algo.rl else state
            mean, log_std = self._policy(actor_state)  # (B, A) each
            pi_action, pi_log_prob = sample_tanh_gaussian(mean, log_std, self._noise(b, act_dim))
            alpha = a.log_alpha.exp()

            # ---- actor: alpha log pi - min Q  +  bc_weight * BC
            if lc.bc_loss == "nll":
                bc = losses.bc_term(log_prob_data=tanh_gaussian_log_prob(mean, log_std, action))
            else:
                bc = losses.bc_term(mean_action=torch.tanh(mean), data_action=action)
            if algo.rl:
                q_pi = self._critic(actor_state, pi_action[:, None]).squeeze(-1)  # (E, B)
            else:
                q_pi = torch.zeros((2, b), device=self.device)
            actor_total, actor_rl, bc_mean = losses.actor_loss(
                q_pi,
                pi_log_prob,
                alpha,
                bc,
                algo.bc_weight,
                rl_weight=1.0 if algo.rl else 0.0,
                normalize_q=algo.rl and lc.normalize_q,
                bc_rows=batch.get(BC_ROWS),
            )
            alpha_total = losses.alpha_loss(a.log_alpha, pi_log_prob, self.target_entropy)

            critic_total = td_loss = cql_diff = bound_rate = mult_loss = None
            if algo.rl:
                out = self._critic_losses(
                    batch, state, mean, log_std, action, alpha, lc.cql_n_actions
                )
                critic_total, td_loss, cql_diff, bound_rate, mult_loss, q_data, y = out
                metrics["q_mean"] = q_data.mean().detach()
                metrics["target_mean"] = y.mean()

        terms = [
            td_loss.detach() if td_loss is not None else zero,
            cql_diff.mean().detach() if cql_diff is not None else zero,
            actor_total.detach(),
            bc_mean.detach(),
            alpha_total.detach(),
        ]
        metrics.update(dict(zip(LOSS_TERMS, terms, strict=True)))
        if critic_total is not None:
            metrics["critic_total"] = critic_total.detach()
        metrics["actor_rl_loss"] = actor_rl.detach()
        metrics["alpha"] = alpha.detach()
        metrics["entropy"] = -pi_log_prob.mean().detach()
        if bound_rate is not None:
            metrics["calql_bound_rate"] = bound_rate
        if algo.conservative:
            metrics["cql_alpha"] = (
                a.log_cql_alpha.exp().detach() * lc.cql_alpha
                if lc.cql_lagrange
                else torch.full((), lc.cql_alpha, device=self.device)
            )
        graph = {
            "critic": critic_total,
            "actor": actor_total,
            "alpha": alpha_total,
            "cql_multiplier": mult_loss,
        }
        return graph, metrics

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient step of every trained part on ``batch``; returns 0-d metric tensors."""
        a = self.agent
        graph, metrics = self.compute_losses(batch)
        # each loss only into the parameters it trains
        self.actor_opt.zero_grad(set_to_none=True)
        self.alpha_opt.zero_grad(set_to_none=True)
        if graph["critic"] is not None:
            self.critic_opt.zero_grad(set_to_none=True)
            graph["critic"].backward(inputs=a.critic_parameters())
        graph["actor"].backward(inputs=self.actor_params)
        graph["alpha"].backward(inputs=[a.log_alpha])
        if graph["critic"] is not None:
            self.critic_opt.step()
        self.actor_opt.step()
        self.alpha_opt.step()
        if graph["cql_multiplier"] is not None:
            self.cql_alpha_opt.zero_grad(set_to_none=True)
            graph["cql_multiplier"].backward(inputs=[a.log_cql_alpha])
            self.cql_alpha_opt.step()
        if self.algo.rl:
            with torch.no_grad():
                target, online = a.target_pairs()
                torch._foreach_lerp_(target, online, self.cfg.learner.tau)
        self.finite.record(metrics, self.num_updates + 1)
        self.num_updates += 1
        return metrics

    def _critic_losses(self, batch, state, mean, log_std, action, alpha, n):
        """TD + (Cal-)CQL terms. Returns (critic loss, TD loss, cql diff (E,), bound rate,
        multiplier loss, Q of data actions (E, B), TD target (B,))."""
        lc, algo, a = self.cfg.learner, self.algo, self.agent
        b, act_dim = action.shape
        n_backup = n if lc.max_target_backup else 1
        with torch.no_grad():
            next_image = self._augment(batch["next_image"])
            next_proprio, task = batch["next_proprio"], batch["task"]
            next_state = a.state(self._encode(next_image), task, next_proprio)
            next_mean, next_log_std = self._policy(next_state)
            noise = self._noise(b, n + n_backup, act_dim)
            next_actions, next_log_prob = sample_tanh_gaussian(
                next_mean[:, None], next_log_std[:, None], noise
            )  # (B, n + n_backup, A)
            target_state = a.state(self._encode_target(next_image), task, next_proprio)
            next_q = self._target_critic(target_state, next_actions[:, n:])  # (E, B, n_backup)
            y = losses.td_target(
                batch["reward"].float() * lc.reward_scale,
                batch["terminal"].float(),
                next_q,
                next_log_prob[:, n:],
                lc.discount,
                alpha.detach(),
                lc.backup_entropy,
            )
            if algo.conservative:
                cur_actions, cur_log_prob = sample_tanh_gaussian(
                    mean.detach()[:, None], log_std.detach()[:, None], self._noise(b, n, act_dim)
                )  # (B, N, A)
                rand_actions = (
                    torch.rand((b, n, act_dim), generator=self.generator, device=self.device) * 2.0
                    - 1.0
                )
        if not algo.conservative:
            q_data = self._critic(state, action[:, None]).squeeze(-1)  # (E, B)
            td = losses.critic_loss(q_data, y)
            return td, td, None, None, None, q_data, y
        # one critic call: [data, random, current, next] actions share the state's first layer
        cql_next = next_actions[:, :n]
        all_actions = torch.cat([action[:, None], rand_actions, cur_actions, cql_next], 1)
        q_all = self._critic(state, all_actions)  # (E, B, 1 + 3N)
        q_data = q_all[:, :, 0]
        q_rand, q_cur, q_next = q_all[:, :, 1:].split(n, dim=2)
        bound_rate = None
        if algo.calibrated:
            mc = batch["mc_return"].float() * lc.reward_scale  # returns of the scaled rewards
            q_cur, rate_cur = losses.calibrated_lower_bound(q_cur, mc)
            q_next, rate_next = losses.calibrated_lower_bound(q_next, mc)
            bound_rate = (0.5 * (rate_cur + rate_next)).detach()
        cql_diff = losses.cql_penalty(
            q_data,
            q_rand,
            q_cur,
            cur_log_prob,
            q_next,
            next_log_prob[:, :n],
            act_dim,
            lc.cql_temperature,
            lc.cql_importance_sample,
        )
        mult_loss = None
        if lc.cql_lagrange:
            cql_term, mult_loss = losses.cql_lagrange_loss(
                a.log_cql_alpha, cql_diff, lc.cql_target_gap, lc.cql_alpha
            )
        else:
            cql_term = lc.cql_alpha * cql_diff.sum()
        td = losses.critic_loss(q_data, y)
        return td + cql_term, td, cql_diff, bound_rate, mult_loss, q_data, y

    def check_finite(self, checkpoint: str | None = None) -> None:
        """Raise NonFiniteLossError if any update so far produced a NaN/inf loss (one sync)."""
        self.finite.check(checkpoint)

    # ------------------------------------------------------------------ Acme-style interface

    def step(self) -> dict[str, torch.Tensor]:
        """Sample a batch from ``batch_source`` and update on it."""
        if self.batch_source is None:
            raise RuntimeError("Learner.step() needs a batch_source; use update(batch)")
        return self.update(self.batch_source())

    def run(self, num_steps: int) -> dict[str, torch.Tensor]:
        metrics: dict[str, torch.Tensor] = {}
        for _ in range(num_steps):
            metrics = self.step()
        return metrics

    def get_variables(self) -> dict[str, np.ndarray]:
        """Flat dict of the actor's variables: encoder, policy and task-embedding table."""
        return {
            k: v.detach().float().cpu().contiguous().numpy()
            for k, v in self.agent.policy_state_dict().items()
        }

    @torch.no_grad()
    def act(self, batch: Batch, deterministic: bool = True) -> torch.Tensor:
        """Actions (B, A) for a batch of observations (image, proprio, task) on the device."""
        mean, log_std = self.agent.distribution(batch["image"], batch["proprio"], batch["task"])
        if deterministic:
            return torch.tanh(mean)
        return sample_tanh_gaussian(mean, log_std, self._noise(*mean.shape))[0]

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent.state_dict(),
            "optimizers": {
                "critic": self.critic_opt.state_dict() if self.critic_opt else None,
                "actor": self.actor_opt.state_dict(),
                "alpha": self.alpha_opt.state_dict(),
                "cql_alpha": self.cql_alpha_opt.state_dict(),
            },
            "num_updates": self.num_updates,
            "generator": self.generator.get_state(),
            **self.finite.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.agent.load_state_dict(state["agent"])
        opts = state["optimizers"]
        if self.critic_opt is not None:
            self.critic_opt.load_state_dict(opts["critic"])
        self.actor_opt.load_state_dict(opts["actor"])
        self.alpha_opt.load_state_dict(opts["alpha"])
        self.cql_alpha_opt.load_state_dict(opts["cql_alpha"])
        self.num_updates = int(state["num_updates"])
        self.generator.set_state(state["generator"])
        self.finite.load_state_dict(state)

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write a checkpoint (atomic); ``extra`` carries e.g. the sampler state."""
        from learner.checkpoint import write_checkpoint

        return write_checkpoint(path, self.cfg, self.state_dict(), extra or {})

    def restore(self, path: str | Path, check_config: bool = True) -> dict[str, Any]:
        """Load a checkpoint written by ``save``; returns its ``extra`` dict.

        ``check_config`` (resuming): refuse a checkpoint trained with a config whose numerics
        differ (``checkpoint.resume_hash``). Off when warm-starting a different phase (online
        fine-tuning from the offline checkpoint); the networks must still have the same shapes.
        """
        from learner.checkpoint import check_compatible, read_checkpoint

        ckpt = read_checkpoint(path)
        if check_config:
            check_compatible(ckpt, self.cfg, path)
        self.load_state_dict(ckpt["learner"])
        return ckpt.get("extra", {})

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        batch_source: Callable[[], Batch] | None = None,
        cfg: ExperimentConfig | None = None,
        device: str | torch.device | None = None,
    ) -> Learner:
        """A learner in the state of a checkpoint: networks, optimisers, counter and RNG.

        ``cfg`` defaults to the checkpoint's config; a given ``cfg`` (e.g. the online phase's)
        may differ in anything but the network shapes. The task table comes from the
        checkpoint, so no text model is loaded. ``num_updates`` continues from the checkpoint.
        """
        from learner.checkpoint import checkpoint_config, read_checkpoint

        ckpt = read_checkpoint(path)
        cfg = cfg or checkpoint_config(ckpt)
        table = ckpt["learner"]["agent"]["task_table"]
        learner = cls(cfg, batch_source=batch_source, task_table=table, device=device)
        learner.restore(path, check_config=False)
        return learner
