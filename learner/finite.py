"""NaN/inf losses, found without a host sync per update.

The learner records, on the device, the first update whose loss terms were not finite and
which terms those were; :meth:`FiniteWatch.check` syncs once (at a checkpoint or evaluation) and
raises :class:`NonFiniteLossError` naming the update, the terms and the last good checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch

LOSS_TERMS = ("critic_loss", "cql_penalty", "actor_loss", "bc_loss", "alpha_loss")
WATCHED_TERMS = (*LOSS_TERMS, "critic_total")
"""The metrics whose finiteness every update records, in this order."""


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or inf; names the update and the terms."""

    def __init__(self, step: int, terms: list[str], checkpoint: str | None = None):
        self.step, self.terms, self.checkpoint = step, terms, checkpoint
        where = f"; last good checkpoint: {checkpoint}" if checkpoint else "; no checkpoint yet"
        super().__init__(f"non-finite loss at update {step}: {', '.join(terms)}{where}")


class FiniteWatch:
    """The first update with a non-finite term and which terms, kept on ``device``."""

    def __init__(self, device: torch.device | str):
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)
        self.bad_terms = torch.zeros(len(WATCHED_TERMS), dtype=torch.bool, device=device)

    def record(self, metrics: dict[str, torch.Tensor], update: int) -> None:
        """Note update number ``update``'s terms (missing ones count as finite); no sync."""
        zero = metrics["actor_loss"].new_zeros(())
        bad = ~torch.isfinite(torch.stack([metrics.get(k, zero) for k in WATCHED_TERMS]))
        first = bad.any() & (self.first_bad < 0)
        self.first_bad = torch.where(first, update, self.first_bad)
        self.bad_terms = torch.where(first, bad, self.bad_terms)

    def check(self, checkpoint: str | None = None) -> None:
        """Raise NonFiniteLossError if any recorded update had a NaN/inf term (one sync)."""
        step = int(self.first_bad)
        if step >= 0:
            flags = self.bad_terms.tolist()
            terms = [t for t, bad in zip(WATCHED_TERMS, flags, strict=True) if bad]
            raise NonFiniteLossError(step, terms, checkpoint)

    def state_dict(self) -> dict[str, Any]:
        return {"first_bad": self.first_bad.cpu(), "bad_terms": self.bad_terms.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.first_bad.device
        self.first_bad = state["first_bad"].to(device)
        self.bad_terms = state["bad_terms"].to(device)
