"""The ``robofume`` command: one entry point, the subcommands of every area.

The library (``robofume/``) does not know the processes; this module, in the layer that
orchestrates them, puts their subcommands together. Shared flags and the config they build
live in :mod:`robofume.cli`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Callable

from robofume.auth import SecretMissing
from robofume.cli import OVERRIDE_DEST, add_config_fields, config_from_args, json_stdout
from robofume.config import ConfigError
from robofume.logs import setup_logging

log = logging.getLogger("robofume.cli")

AREAS = (
    "robofume.envs.cli",
    "robofume.data.cli",
    "learner.cli",
    "reward_server.cli",
    "replay.cli",
    "actor.cli",
    "deploy.cli",
)


# Subcommands that take config overrides without --preset (they start from a checkpoint's
# config), so add_config_args does not give them their override flags.
OVERRIDES_WITHOUT_PRESET = ("evaluate",)

THREAD_ROLES = {
    "pretrain": "alone",
    "evaluate": "alone",
    "reward finetune": "alone",
    "reward evaluate": "alone",
    "generate": "generate",
    "learner": "learner",
    "reward serve": "reward",
}
"""Commands whose process sizes its torch threads (robofume.threads) before the handler runs;
the actor sizes its own in ``run_actor``, the cluster's services in ``deploy.services``."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robofume",
        description="Reset-free robot fine-tuning: Cal-QL + BC with a VLM success classifier.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in AREAS:
        importlib.import_module(module).register(sub)
    for name in OVERRIDES_WITHOUT_PRESET:
        add_config_fields(sub.choices[name])
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line; ``args.overrides`` holds the config overrides in order given."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    bad = [a for a in unknown if a.startswith("--") and "." not in a.split("=")[0]]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    declared = []
    for key in [k for k in vars(args) if k.startswith(OVERRIDE_DEST)]:
        declared += [f"--{key[len(OVERRIDE_DEST) :]}", getattr(args, key)]
        delattr(args, key)
    # unknown dotted flags (a misspelt field) stay overrides: load_config names the known ones
    args.overrides = declared + unknown
    return args


def size_command_threads(args: argparse.Namespace) -> int | None:
    """Size this process's threads for the command (:data:`THREAD_ROLES`); returns them."""
    sub = getattr(args, f"{args.command}_command", None)
    role = THREAD_ROLES.get(f"{args.command} {sub}" if sub else args.command)
    if role is None:
        return None
    try:
        cfg = config_from_args(args)
    except (ConfigError, ValueError):  # the handler reports it
        return None
    from robofume.threads import size_threads

    return size_threads(cfg, role)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow (under Reverb) is chatty
    args = parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    handler: Callable[[argparse.Namespace], int | None] = args.handler
    quiet_stdout = json_stdout() if getattr(args, "json", False) else contextlib.nullcontext()
    try:
        with quiet_stdout:
            size_command_threads(args)
            return int(handler(args) or 0)
    except ConfigError as err:
        log.error("config error: %s", err)
        return 2
    except SecretMissing as err:
        log.error("%s", err)
        return 2
    except KeyboardInterrupt:
        log.warning("interrupted")
        return 130
    except BrokenPipeError:  # `robofume tasks | head`: the reader left; not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
