"""Run the benchmarks: ``make bench`` (quick set) or ``python -m benchmarks.run NAME ...``.

Each benchmark is its own module (``python -m benchmarks.<name> --help`` for its options) and
records its table in ``benchmarks/RESULTS.md`` with the machine and the date. The quick set
measures components in a few minutes each; the learning and whole-system runs take longer
(``--all``, or name them), and want a GPU for the ``sim-gpu`` preset. The online learning runs
(``benchmarks/online_start.py``, then ``benchmarks/online_system.py``) take arguments: see
RESULTS.md.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time

log = logging.getLogger("benchmarks")

QUICK = (
    "sim_speed",
    "generate_time",
    "learner_speed",
    "replay_throughput",
    "reward_server",
    "actor_timing",
    "thread_share",
)
LONG = ("reward_quality", "offline_learning", "system_throughput")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: {' '.join(QUICK)})")
    parser.add_argument("--all", action="store_true", help="also the long learning/system runs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    names = args.names or (QUICK + LONG if args.all else QUICK)
    unknown = [n for n in names if n not in QUICK + LONG]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {', '.join(QUICK + LONG)}")
    failed = []
    for name in names:
        start = time.monotonic()
        log.info("benchmark %s ...", name)
        code = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"])
        log.info(
            "benchmark %s: %s in %.0f s",
            name,
            "ok" if code == 0 else f"exit {code}",
            time.monotonic() - start,
        )
        if code != 0:
            failed.append(name)
    if failed:
        log.error("failed: %s", ", ".join(failed))
    log.info("results: benchmarks/RESULTS.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
