"""What every ``robofume`` subcommand shares: the config flags and the config they build.

The command itself (``deploy.command``) registers each area's subcommands; every area module
exposes ``register(subparsers)``; handlers import heavy dependencies
(torch, TensorFlow, MuJoCo) lazily so ``robofume --help`` stays fast. Config overrides are
``--section.field VALUE`` arguments: every config-driven subcommand declares one per config
field (generated from the config dataclasses and their field docstrings, so ``--help`` lists
them with their defaults), and they reach :func:`config_from_args` as ``args.overrides``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from robofume.config import ExperimentConfig, load_config

log = logging.getLogger(__name__)

OVERRIDE_DEST = "override:"
"""Namespace attributes of declared overrides are ``override:<section.field>``."""

_json_out: TextIO | None = None
"""Where :func:`print_json` writes while :func:`json_stdout` holds stdout (None: stdout)."""


@contextlib.contextmanager
def json_stdout() -> Iterator[None]:
    """Keep stdout for the JSON of a ``--json`` command: anything else goes to stderr.

    Libraries print on stdout now and then (a weights-loaded line, a C extension's notice);
    while this holds, stdout (file descriptor 1 too, when it is the real one) points at stderr
    and only :func:`print_json` reaches the real stdout, so ``... --json | python -m json.tool``
    parses.
    """
    global _json_out
    previous = sys.stdout
    previous.flush()
    try:
        python_on_fd1 = previous.fileno() == 1
    except (AttributeError, OSError, ValueError):  # a stream with no descriptor
        python_on_fd1 = False
    try:
        saved: int | None = os.dup(1)
    except OSError:  # no descriptor 1 at all
        saved = None
    if python_on_fd1 and saved is not None:
        _json_out = os.fdopen(saved, "w", closefd=False)
    else:
        _json_out = previous
    if saved is not None:
        os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout.flush()
        _json_out.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)
        sys.stdout = previous
        _json_out = None


def print_json(obj: Any, indent: int | None = 2, default: Any = str) -> None:
    """Write ``obj`` as JSON to the command's stdout (see :func:`json_stdout`)."""
    out = _json_out if _json_out is not None else sys.stdout
    out.write(json.dumps(obj, indent=indent, default=default) + "\n")
    out.flush()


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
    groups: dict[tuple[str, type | None], argparse._ArgumentGroup] = {}
    for field in experiment_fields():
        if not field.section:  # top-level name/seed: not overridable (--seed is a flag of some)
            continue
        key = (field.section, field.concern)
        group = groups.get(key)
        if group is None:
            title = f"config section {field.section}"
            about = class_doc(sections[field.section])
            if field.concern is not None:  # a section assembled by concern: one group each
                what, _, about = class_doc(field.concern).partition(": ")
                title += f": {what.lower()}"
            group = groups[key] = parser.add_argument_group(title, about or None)
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
