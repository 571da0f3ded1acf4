"""``robofume learner``: the online fine-tuning learner as a command.

Runs until SIGINT/SIGTERM (or ``--updates``/``--max-seconds``), then checkpoints and publishes
the newest weights. Started again with the same run directory it resumes where it stopped.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from robofume.cli import print_json

log = logging.getLogger(__name__)


def register_online(sub: argparse._SubParsersAction) -> None:
    """Add ``robofume learner`` to the ``robofume`` parser."""
    from robofume.cli import add_config_args

    p = sub.add_parser(
        "learner",
        help="online fine-tuning learner: offline + Reverb batches, publishes policy weights",
        description="Online Cal-QL + BC fine-tuning against the replay server. Resumes from "
        "<out>/checkpoints, else starts from the newest pre-training checkpoint.",
    )
    add_config_args(p)
    p.add_argument("--pretrained", default=None, help="checkpoint file or directory to start from")
    p.add_argument("--data", default=None, help="offline dataset directory (default: data.dir)")
    p.add_argument("--out", default=None, help="online run directory (default: <run_dir>/online)")
    p.add_argument("--replay", default=None, help="replay address (default: deploy.replay_address)")
    p.add_argument("--updates", type=int, default=None, help="stop at this many online updates")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this long")
    p.add_argument("--json", action="store_true", help="print a JSON summary to stdout")
    p.set_defaults(handler=_online)


def _online(args: argparse.Namespace) -> int:
    from learner.online import run_online_learner
    from robofume.cli import config_from_args

    cfg = config_from_args(args)
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping the learner after this update", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        result = run_online_learner(
            cfg,
            stop,
            updates=args.updates,
            max_seconds=args.max_seconds,
            pretrained=args.pretrained,
            data_dir=args.data,
            out_dir=args.out,
            replay_address=args.replay,
        )
    except FileNotFoundError as err:
        log.error("%s", err)
        return 1
    summary = {
        "updates": result.updates,
        "online_updates": result.online_updates,
        "published_version": result.published_version,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "metrics": result.metrics,
    }
    if args.json:
        print_json(summary, indent=2)
    else:
        log.info(
            "learner stopped: %d updates (%d online), checkpoint %s",
            result.updates,
            result.online_updates,
            summary["checkpoint"],
        )
    return 0
