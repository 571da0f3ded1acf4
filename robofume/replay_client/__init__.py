"""The replay clients every process shares, and the tables' contract they and the server use.

```python
from robofume.replay_client.writer import EpisodeWriter  # EpisodeWriter(address, cfg).write(ep)
from robofume.replay_client.sampler import OnlineSampler  # OnlineSampler(address, b, device)
from robofume.replay_client.weights import WeightsClient    # .publish(vars, version) / .fetch()
from robofume.replay_client.errors import ReplayUnavailableError  # unreachable: retry later
from robofume.replay_client.info import stats_at            # sizes and counters for status/metrics
```

Tables (``tables``): ``online`` (transitions; FIFO, uniform, bounded; UTD rate limiter;
signature; items carry ``episode_id`` and ``step``), ``policy_weights`` and
``policy_version`` (one item each), ``replay_marker`` (the server's epoch and checkpoint
count, ``marker``). The server itself is the top-level ``replay`` package. Importing this
package is cheap; the modules above import Reverb (and with it TensorFlow) when used, and
nothing else in robofume imports Reverb.
"""
