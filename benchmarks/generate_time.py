"""Wall time to generate the simulated datasets (``robofume generate``).

``python -m benchmarks.generate_time [--presets smoke sim-cpu] [--workers 1 2] [--no-record]``

Generates each preset's dataset into a temporary directory with each worker count and
records wall time, environment steps per second, episode counts, file sizes and the expert's
success rate in ``benchmarks/RESULTS.md`` under ``## Dataset generation``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine as describe_machine
from benchmarks.common import record_section

HEADING = "## Dataset generation"


def run_one(preset: str, workers: int) -> dict:
    """Generate ``preset``'s dataset with ``workers`` processes; returns the measurements."""
    from robofume.config import load_config
    from robofume.data.generate import generate_dataset

    cfg = load_config(preset)
    cfg = cfg.replace(data=dataclasses.replace(cfg.data, workers=workers))
    with tempfile.TemporaryDirectory(prefix="robofume-gen-") as tmp:
        start = time.perf_counter()
        out = generate_dataset(cfg, Path(tmp) / preset)
        wall = time.perf_counter() - start
        manifest = json.loads((out / "manifest.json").read_text())
        size_mb = sum(p.stat().st_size for p in out.glob("*.hdf5")) / 2**20
    steps = sum(manifest["steps"].values())
    return {
        "preset": preset,
        "workers": workers,
        "image_size": cfg.env.image_size,
        "episodes": manifest["episodes"],
        "steps": steps,
        "wall_s": wall,
        "steps_per_s": steps / wall,
        "size_mb": size_mb,
        "demo_success_rate": manifest["expert"]["demo_success_rate"],
        "retries": sum(manifest["expert"]["retries"].values()),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| preset | image | workers | episodes (prior/target/failures) | env steps | wall time "
        "| steps/s | size | expert demo success | retries |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        e = r["episodes"]
        lines.append(
            f"| {r['preset']} | {r['image_size']} px | {r['workers']} | "
            f"{e['prior']}/{e['target']}/{e['failures']} | {r['steps']} | {r['wall_s']:.1f} s | "
            f"{r['steps_per_s']:.0f} | {r['size_mb']:.1f} MB | {r['demo_success_rate']:.1%} | "
            f"{r['retries']} |"
        )
    return "\n".join(lines)


def record(rows: list[dict], machine: str) -> None:
    """Replace (or add) this benchmark's section of RESULTS.md."""
    section = (
        f"{HEADING}\n\n"
        f"`python -m benchmarks.generate_time` on {machine}; {time.strftime('%Y-%m-%d')}.\n"
        "Wall time of `robofume generate` for each preset's default counts, including worker "
        "start-up and HDF5 writing (lzf). Env steps = steps stored in the dataset (rejected "
        "rollouts not counted). The machine is shared with other jobs, so times vary.\n\n"
        f"{table(rows)}\n"
    )
    record_section(HEADING, section)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["smoke", "sim-cpu"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--no-record", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args(argv)
    os.environ.setdefault("ROBOFUME_NO_PROGRESS", "1")
    from robofume.logs import setup_logging

    setup_logging(logging.WARNING)
    machine = describe_machine()
    rows = []
    for preset in args.presets:
        for workers in args.workers:
            rows.append(run_one(preset, workers))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    print(table(rows))
    if not args.no_record:
        record(rows, machine)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
