"""The Reverb replay server."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReplayConfig:
    """The Reverb replay server."""

    online_max_size: int = 200_000
    """Transitions kept in the online table (FIFO)."""
    min_size_to_sample: int = 256
    """Online transitions needed before the learner samples."""
    samples_per_insert_tolerance: float = 0.25
    """Learner-side slack of the UTD rate limiter: the learner may sample this fraction of
    min_size_to_sample steps' worth of samples beyond the UTD target before sampling blocks
    (at least two steps' worth)."""
    insert_lead_steps: int = 0
    """Actor-side slack: environment steps the actors may insert beyond what the learner has
    consumed at the UTD target before inserts block (0: online_max_size)."""
    checkpoint_every_s: float = 300.0
    """Seconds between Reverb checkpoints (0 = only on a clean stop); Reverb keeps the newest."""
    checkpoint_dir: str = ""
    """Where checkpoints go (empty: <run_dir>/replay)."""
    prefetch: int = 2
    """Batches the learner's sampler prefetches."""
    flush_every: int = 32
    """Items between flushes of the actor's trajectory writer."""
    rpc_timeout_s: float = 10.0
    """Deadline of one replay call (reachability check, flush, weights transfer)."""
    sample_timeout_s: float = 2.0
    """How long the sampler waits on the rate limiter before reporting 'waiting for data'."""
