"""``robofume actor`` (and ``python -m actor``): run the robot-side reset-free loop."""

from __future__ import annotations

import argparse
import json
import logging

from robofume.cli import print_json

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``robofume actor`` to the ``robofume`` parser."""
    from robofume.cli import add_config_args

    p = sub.add_parser(
        "actor",
        help="run the robot-side actor (reset-free loop) against replay and reward servers",
        description="Alternates the forward and reset tasks with one policy, labels frames "
        "with the reward server, streams episodes into replay and pulls newer policy weights. "
        "Addresses come from the deploy section of the config. Intervene with r + Enter, "
        "`kill -USR1 <pid>` or `robofume actor --intervene`.",
    )
    add_config_args(p)
    p.add_argument("--actor_id", type=int, default=0, help="index of this actor (default 0)")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="environment steps to run (default: actor.total_steps; 0 = forever)",
    )
    p.add_argument(
        "--intervene",
        action="store_true",
        help="ask the running actor --actor_id to intervene (reset, forward task)",
    )
    p.add_argument("--stop", action="store_true", help="ask the running actor to stop")
    p.add_argument("--json", action="store_true", help="print the final status as JSON")
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from robofume.cli import config_from_args

    cfg = config_from_args(args)
    if args.intervene or args.stop:
        from actor.control import send_command

        reply = send_command(cfg, "stop" if args.stop else "intervene", args.actor_id)
        print(json.dumps(reply))
        return 0 if reply.get("ok") else 1
    from actor.run import run_actor

    if cfg.deploy.head_address:  # the robot PC: the cluster's config and addresses
        from robofume.telemetry import HeadUnavailable, join_head

        try:
            cfg = join_head(cfg)
        except HeadUnavailable as err:
            log.error("%s (deploy.head_address %s)", err, cfg.deploy.head_address)
            return 1
    status = run_actor(cfg, actor_id=args.actor_id, max_steps=args.steps)
    if args.json:
        print_json(status, default=str, indent=1)
    return 0
