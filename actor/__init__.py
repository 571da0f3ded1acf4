"""The robot-side actor: the reset-free loop that collects online data for the learner.

```python
from actor.run import run_actor
status = run_actor(cfg, stop_event, actor_id=0)      # blocks; returns the final status dict
```

Modules: ``loop`` (Acme-style ``Actor`` + ``ResetFreeLoop``), ``scheduler`` (deadline ticks,
jitter), ``labels`` (async reward labels keyed by step id), ``episodes`` (segments, split at
success, MC returns, spill files), ``delivery`` (ordered, loss-free delivery to replay with a
memory bound and disk spill), ``weights`` (background weight pulls, config-hash check),
``control`` (keyboard / SIGUSR1 / HTTP interventions), ``report`` (TensorBoard + status).
"""
