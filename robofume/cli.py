"""The ``robofume`` command: one entry point, subcommands registered by each area.

Every area module exposes ``register(subparsers)``; handlers import heavy dependencies
(torch, TensorFlow, MuJoCo) lazily so ``robofume --help`` stays fast. Config overrides are
``--section.field VALUE`` arguments: every config-driven subcommand declares one per config
field (generated from the config dataclasses and their field docstrings, so ``--help`` lists
them with their defaults), and they reach :func:`config_from_args` as ``args.overrides``.
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

OVERRIDE_DEST = "override:"
"""Namespace attributes of declared overrides are ``override:<section.field>``."""


class ConfigHelpFormatter(argparse.HelpFormatter):
    """Keeps the usage line short: the config fields appear in their own help groups."""

    def _format_usage(self, usage, actions, groups, prefix):  # type: ignore[no-untyped-def]
        kept = [a for a in actions if not a.dest.startswith(OVERRIDE_DEST)]
        text = super()._format_usage(usage, kept, groups, prefix)
        if usage is None and len(kept) < len(actions):
            text = text.rstrip("\n") + " [--section.field VALUE ...]\n\n"
        return text


def add_config_args(
    parser: argparse.ArgumentParser, default_preset: str | None = "sim-cpu"
) -> None:
    """The flags every config-driven subcommand takes: --preset, --config_path, overrides."""
    parser.add_argument(
        "--preset",
        default=default_preset,
        help="preset name in deploy/configs (default: %(default)s)",
    )
    parser.add_argument("--config_path", default=None, help="YAML file applied after the preset")
    add_config_fields(parser)


def add_config_fields(parser: argparse.ArgumentParser) -> None:
    """One ``--section.field VALUE`` flag per config field, grouped by section, for --help.

    The help text is the field's docstring and its schema default; the values are parsed
    like any override (YAML scalars, ``a,b`` or ``[a, b]`` lists) by :func:`config_from_args`.
    """
    from robofume.config.fields import (
        class_doc,
        experiment_fields,
        format_default,
        section_classes,
        type_name,
    )

    parser.formatter_class = ConfigHelpFormatter
    parser.add_argument_group(
        "config overrides (--section.field VALUE)",
        "Any field of the config sections below, applied after --preset and --config_path."
        " The defaults shown are the schema's; a preset (deploy/configs/<name>.yaml) may set"
        " others. Lists: a,b or [a, b]. A value starting with '-' needs the"
        " --section.field=VALUE form.",
    )
    sections = section_classes(ExperimentConfig)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for field in experiment_fields():
        if not field.section:  # top-level name/seed: not overridable (--seed is a flag of some)
            continue
        group = groups.get(field.section)
        if group is None:
            about = class_doc(sections[field.section])
            title = f"config section {field.section}"
            group = groups[field.section] = parser.add_argument_group(title, about)
        text = f"{field.doc} (default: {format_default(field.default)})"
        group.add_argument(
            f"--{field.path}",
            dest=OVERRIDE_DEST + field.path,
            metavar=type_name(field.type),
            default=argparse.SUPPRESS,
            help=text.replace("%", "%%"),
        )


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
    size_command_threads(args)
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
