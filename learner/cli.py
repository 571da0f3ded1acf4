"""``robofume pretrain`` and ``robofume evaluate``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Callable

from robofume.cli import print_json

log = logging.getLogger(__name__)


def _reports_errors(fn: Callable[[argparse.Namespace], int]) -> Callable:
    """Turn the expected failures (bad data, NaN, missing files) into one clear log line."""

    def wrapper(args: argparse.Namespace) -> int:
        from learner.data import DatasetMismatchError
        from learner.finite import NonFiniteLossError
        from robofume.config import ConfigError
        from robofume.data import DatasetError

        try:
            return fn(args)
        except ConfigError:
            raise  # reported by the robofume command (exit code 2)
        except (DatasetError, DatasetMismatchError) as err:
            log.error("dataset error: %s", err)
            return 2
        except NonFiniteLossError as err:
            log.error("training stopped: %s", err)
            return 3
        except (FileNotFoundError, KeyError, ValueError) as err:
            log.error("%s", err)
            return 1

    return wrapper


@_reports_errors
def _pretrain(args: argparse.Namespace) -> int:
    from learner.pretrain import pretrain
    from robofume.cli import config_from_args

    cfg = config_from_args(args)
    if args.steps is not None:
        cfg = cfg.replace(learner=dataclasses.replace(cfg.learner, steps=args.steps))
    if args.data is not None:
        cfg = cfg.replace(data=dataclasses.replace(cfg.data, dir=args.data))
    result = pretrain(cfg, cfg.data.dir, args.out)
    summary = {
        "steps": result.steps,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "metrics": result.metrics,
        "evaluations": result.evaluations,
    }
    if args.json:
        print_json(summary, indent=2)
    else:
        log.info("done: %d updates, checkpoint %s", result.steps, summary["checkpoint"])
    return 0


@_reports_errors
def _evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from learner.evaluate import SEED_SPLITS, default_eval_tasks, evaluate_policy, write_media
    from robofume.config.base import merge, parse_overrides
    from robofume.policy import load_policy

    policy = load_policy(args.checkpoint)
    cfg = policy.cfg
    if args.overrides:
        cfg = merge(cfg, parse_overrides(list(args.overrides)))
        policy.cfg = cfg
    tasks = args.task or default_eval_tasks(cfg)
    from robofume.tasks import task_table

    for task in tasks:
        task_table(cfg).get(task)  # KeyError listing the known tasks
    result = evaluate_policy(
        cfg,
        policy,
        tasks,
        args.episodes,
        deterministic=not args.stochastic,
        record=args.record,
        seed=SEED_SPLITS[args.split] if args.seed is None else args.seed,
        show_progress=True,
        online_scene=args.scene == "online",
    )
    out_dir = Path(args.out) if args.out else Path(policy.source).parent.parent / "evaluation"
    media = write_media(result, out_dir, f"eval_{policy.version}")
    summary = result.summary()
    summary.update(
        checkpoint=str(policy.source),
        update=policy.version,
        media=[str(p) for p in media],
        scene=args.scene,
        split=args.split if args.seed is None else f"seed {args.seed}",
        deterministic=not args.stochastic,
    )
    if args.json:
        print_json(summary, indent=2)
    else:
        for task, row in summary["tasks"].items():
            print(
                f"{task:24s} success {row['success_rate']:.2f} "
                f"({row['successes']}/{row['episodes']}), mean length {row['mean_length']:.1f}"
            )
        print(f"{'mean':24s} success {summary['mean_success_rate']:.2f}")
        log.info("wrote %s", ", ".join(summary["media"]))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this area's subcommands to the ``robofume`` parser."""
    from robofume.cli import add_config_args

    p = sub.add_parser(
        "pretrain",
        help="offline pre-training (Cal-QL + BC) on prior + target demos",
        description="Offline pre-training; resumes from the newest checkpoint in --out.",
    )
    add_config_args(p)
    p.add_argument("--data", default=None, help="dataset directory (default: data.dir)")
    p.add_argument("--steps", type=int, default=None, help="total updates (default: learner.steps)")
    p.add_argument("--out", default=None, help="run directory (default: <run_dir>/pretrain)")
    p.add_argument("--json", action="store_true", help="print a JSON summary to stdout")
    p.set_defaults(handler=_pretrain)

    e = sub.add_parser(
        "evaluate",
        help="roll out a checkpoint in the simulator (ground-truth success)",
        description="Per-task success of a checkpoint; writes a PNG panel and a GIF. "
        "Config overrides such as --env.max_episode_steps 100 apply on top of the "
        "checkpoint's config.",
    )
    e.add_argument("checkpoint", help="ckpt_<step>.pt or a directory holding checkpoints")
    e.add_argument("--task", nargs="+", default=None, help="tasks (default: forward targets)")
    e.add_argument("--episodes", type=int, default=10, help="episodes per task")
    e.add_argument("--stochastic", action="store_true", help="sample actions (default: mean)")
    e.add_argument("--record", type=int, default=2, help="episodes per task in the media")
    e.add_argument(
        "--split",
        choices=("evaluation", "validation"),
        default="evaluation",
        help="seeds: 'evaluation' for reported results, 'validation' (disjoint) for choosing "
        "checkpoints and hyper-parameters",
    )
    e.add_argument("--seed", type=int, default=None, help="first seed (overrides --split)")
    e.add_argument(
        "--scene",
        choices=("offline", "online"),
        default="online",
        help="'online': the actors' scene (env.online applied); 'offline': the data's scene",
    )
    e.add_argument("--out", default=None, help="media directory (default: <run>/evaluation)")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.set_defaults(handler=_evaluate)

    from learner.online_cli import register_online  # `robofume learner` (online fine-tuning)

    register_online(sub)
