"""What authentication costs: signing/checking transitions and policy weights on this CPU.

    python -m benchmarks.auth_cost

The learner's sampler checks every sampled row (HMAC-SHA256 over both frames, proprio,
action, reward, ids) in its background thread; actors sign each transition once; every
weights publish is signed once and checked once per actor.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from benchmarks.common import machine


def _rows(n: int, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "image": rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8),
        "next_image": rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8),
        "proprio": rng.normal(size=(n, 7)).astype(np.float32),
        "next_proprio": rng.normal(size=(n, 7)).astype(np.float32),
        "action": rng.normal(size=(n, 4)).astype(np.float32),
        "reward": np.zeros(n, np.float32),
        "terminal": np.zeros(n, np.float32),
        "mc_return": np.zeros(n, np.float32),
        "task": np.zeros(n, np.int64),
        "episode_id": np.ones(n, np.int64),
        "step": np.arange(n, dtype=np.int32),
    }


def _best_ms(fn, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def main() -> None:
    from robofume.auth import authentic_rows, sign_manifest, transition_macs

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=128, help="online rows per batch")
    args = p.parse_args()
    rng = np.random.default_rng(0)
    key = b"k" * 64
    out = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "rows": args.rows}
    for size in (32, 64, 100):
        rows = _rows(args.rows, size, rng)
        rows["mac"] = transition_macs(key, rows)
        out[f"check_batch_ms_{size}px"] = round(_best_ms(lambda r=rows: authentic_rows(key, r)), 2)
    weights = {f"w{i}": rng.normal(size=(256, 256)).astype(np.float32) for i in range(16)}
    names = sorted(weights)
    manifest = {"version": 1, "session": 1, "config_hash": "h", "names": names}
    out["sign_weights_ms_4MB"] = round(
        _best_ms(lambda: sign_manifest(key, manifest, [weights[n] for n in names])), 2
    )
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
