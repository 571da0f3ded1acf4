"""The Cal-QL + BC learner: the same update offline (pre-training) and online (fine-tuning).

```python
from learner.learner import Learner                  # update(batch), step(), run(n), ...
from learner.buffer import OfflineBuffer, mix_batches, split_sizes
from learner.data import load_pretrain_episodes      # prior + target demos, checked vs config
from learner.pretrain import pretrain                # the `robofume pretrain` loop
from learner.evaluate import evaluate_policy         # ground-truth success in the simulator

learner = Learner.from_checkpoint("runs/sim-cpu/pretrain/checkpoints/ckpt_3000.pt",
                                  batch_source=sample_fn, cfg=cfg)
metrics = learner.step()            # dict of 0-d tensors on the device (no host sync)
variables = learner.get_variables() # {name: np.ndarray}: encoder, policy, task_table
```

Modules: ``losses`` (pure loss functions), ``agent`` (networks + algorithm switches),
``learner`` (the update and checkpoint state), ``buffer`` (offline batches on the device),
``checkpoint`` (files, resume hash), ``pretrain``, ``evaluate``, ``cli``.
"""
