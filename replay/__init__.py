"""The Reverb replay server and its clients (Reverb and TensorFlow stay behind this package).

```python
from replay.server import start_replay_server   # start_replay_server(cfg, port, checkpoint_dir)
from replay.writer import EpisodeWriter         # actor: EpisodeWriter(address, cfg).write(ep)
from replay.sampler import OnlineSampler        # learner: OnlineSampler(address, b, device)
from replay.weights import WeightsClient        # .publish(vars, version) / .fetch()
from replay.errors import ReplayUnavailableError  # unreachable: retry later
from replay.info import stats_at                # sizes and counters for status/metrics
```

Tables (``replay.tables``): ``online`` (transitions; FIFO, uniform, bounded; UTD rate limiter;
signature; items carry ``episode_id`` and ``step``), ``policy_weights`` and
``policy_version`` (one item each), ``replay_marker`` (the server's epoch and checkpoint
count, ``replay.marker``). Command line:
``robofume replay serve`` and ``robofume replay info``. Importing this package is cheap; the
modules above import Reverb (and with it TensorFlow) when used.
"""
