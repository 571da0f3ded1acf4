"""The ``robofume`` command: one entry point, subcommands registered by each area.

Every area module exposes ``register(subparsers)``; handlers import heavy dependencies
(torch, TensorFlow, MuJoCo) lazily so ``robofume --help`` stays fast. Config overrides are
the unknown ``--section.field VALUE`` arguments.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable

from robofume.config import ConfigError, ExperimentConfig, load_config
from robofume.logs import setup_logging

log = logging.getLogger(__name__)

AREAS = (
    "robofume.envs.cli",
    "robofume.data.cli",
    "learner.cli",
    "reward_server.cli",
    "replay.cli",
    "actor.cli",
    "deploy.cli",
)


def add_config_args(
    parser: argparse.ArgumentParser, default_preset: str | None = "sim-cpu"
) -> None:
    """The flags every config-driven subcommand takes (overrides are parsed separately)."""
    parser.add_argument(
        "--preset",
        default=default_preset,
        help="preset name in deploy/configs (default: %(default)s)",
    )
    parser.add_argument("--config_path", default=None, help="YAML file applied after the preset")


def config_from_args(args: argparse.Namespace) -> ExperimentConfig:
    """Build the experiment config from --preset, --config_path and the overrides."""
    return load_config(
        getattr(args, "preset", None),
        getattr(args, "config_path", None),
        list(getattr(args, "overrides", []) or []),
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robofume",
        description="Reset-free robot fine-tuning: Cal-QL + BC with a VLM success classifier.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in AREAS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow (under Reverb) is chatty
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    bad = [a for a in unknown if a.startswith("--") and "." not in a.split("=")[0]]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    args.overrides = unknown
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    handler: Callable[[argparse.Namespace], int | None] = args.handler
    try:
        return int(handler(args) or 0)
    except ConfigError as err:
        log.error("config error: %s", err)
        return 2
    except KeyboardInterrupt:
        log.warning("interrupted")
        return 130
    except BrokenPipeError:  # `robofume tasks | head`: the reader left; not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
