"""``robofume tasks`` (the task suite) and ``robofume rollout`` (run a policy in simulation)."""

from __future__ import annotations

import argparse
import logging

from robofume.cli import print_json

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add this area's subcommands to the ``robofume`` parser."""
    from robofume.cli import add_config_args

    p = sub.add_parser("tasks", help="list the simulated task suite")
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"target": [forward and reset instructions], "prior": [...]} as JSON',
    )
    p.set_defaults(handler=cmd_tasks)

    p = sub.add_parser(
        "rollout",
        help="run a policy in the simulated tabletop; print the ground-truth success rate "
        "and write a PNG strip of one episode",
    )
    p.add_argument("--task", required=True, help="task name (see `robofume tasks`)")
    p.add_argument("--policy", default="expert", help="policy to run (default: %(default)s)")
    p.add_argument("--episodes", type=int, default=5, help="episodes (default: %(default)s)")
    p.add_argument(
        "--noise",
        type=float,
        default=None,
        help="expert action noise std (default: data.expert_noise from the config)",
    )
    p.add_argument(
        "--max_steps",
        type=int,
        default=None,
        help="step limit per episode (default: env.max_episode_steps)",
    )
    p.add_argument("--seed", type=int, default=None, help="first episode seed (default: seed)")
    p.add_argument(
        "--out", default="out/rollout", help="directory of the PNG strip (default: %(default)s)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_config_args(p)
    p.set_defaults(handler=cmd_rollout)


def cmd_tasks(args: argparse.Namespace) -> int:
    from robofume.tasks import TASKS

    if args.json:
        out = {
            "target": [t.language for t in TASKS if t.kind != "prior"],
            "prior": [t.language for t in TASKS if t.kind == "prior"],
        }
        print_json(out, indent=2)
        return 0
    rows = [("#", "name", "kind", "object", "from", "to", "instruction")]
    rows += [
        (str(i), t.name, t.kind, t.obj, t.source, t.destination, t.language)
        for i, t in enumerate(TASKS)
    ]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])
    return 0


def cmd_rollout(args: argparse.Namespace) -> int:
    from pathlib import Path

    from robofume.cli import config_from_args
    from robofume.envs import make_env
    from robofume.envs.rollout import policy_from_spec, run_episodes, save_strip, summarize
    from robofume.tasks import get_task

    cfg = config_from_args(args)
    try:
        task = get_task(args.task)
    except KeyError as err:
        log.error("%s", err.args[0])
        return 2
    if args.episodes < 1:
        log.error("--episodes must be >= 1, got %d", args.episodes)
        return 2
    seed = cfg.seed if args.seed is None else args.seed
    max_steps = args.max_steps or cfg.env.max_episode_steps
    env = make_env(cfg.env, task=task.name, seed=seed)
    try:
        try:
            policy = policy_from_spec(args.policy, cfg, env=env, noise=args.noise, seed=seed)
        except ValueError as err:
            log.error("%s", err)
            return 2
        results = run_episodes(
            env,
            policy,
            task.name,
            args.episodes,
            max_steps,
            seed=seed,
            keep_frames="first",
            show_progress=not args.json,
        )
    finally:
        env.close()
    strip = save_strip(
        results[0].frames, Path(args.out) / f"{task.name}_{Path(args.policy).stem}.png"
    )
    summary = summarize(results)
    noise = getattr(policy, "noise", None)
    report = {
        "task": task.name,
        "language": task.language,
        "policy": args.policy,
        "noise": noise,
        "max_steps": max_steps,
        "image_size": cfg.env.image_size,
        **summary,
        "strip": str(strip),
    }
    if args.json:
        print_json(report, indent=2)
    else:
        print(
            f"{task.name} ({task.language!r}), policy {args.policy}"
            + (f", noise {noise}" if noise is not None else "")
            + f": success {summary['successes']}/{summary['episodes']} "
            f"= {summary['success_rate']:.0%}, mean steps {summary['mean_steps']:.1f}"
        )
        print(f"strip of episode 0: {strip}")
    return 0
