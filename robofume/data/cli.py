"""``robofume generate | inspect | render | import-bridge``."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
from collections.abc import Callable

from robofume.cli import print_json

log = logging.getLogger(__name__)


def _reports_dataset_errors(fn: Callable[[argparse.Namespace], int]) -> Callable:
    """Bad input ends the command with one clear line (exit code 1), not a traceback."""

    @functools.wraps(fn)
    def wrapper(args: argparse.Namespace) -> int:
        from robofume.data.errors import DatasetError

        try:
            return fn(args)
        except DatasetError as err:
            log.error("%s", err)
            return 1

    return wrapper


@_reports_dataset_errors
def _generate(args: argparse.Namespace) -> int:
    from robofume.cli import config_from_args
    from robofume.data.generate import generate_dataset

    cfg = config_from_args(args)
    if args.workers is not None:
        cfg = cfg.replace(data=dataclasses.replace(cfg.data, workers=args.workers))
    out = generate_dataset(cfg, args.out, overwrite=args.overwrite)
    if args.json:
        print((out / "manifest.json").read_text())
    return 0


@_reports_dataset_errors
def _inspect(args: argparse.Namespace) -> int:
    from robofume.data.summary import format_summary, summarize

    summary = summarize(args.file)
    print_json(summary) if args.json else print(format_summary(summary))
    return 0


@_reports_dataset_errors
def _render(args: argparse.Namespace) -> int:
    from robofume.data.summary import render_episode

    out = render_episode(
        args.file,
        args.episode,
        args.out,
        gif=args.gif,
        max_frames=args.max_frames,
        scale=args.scale,
    )
    log.info("wrote %s", out)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


@_reports_dataset_errors
def _import_bridge(args: argparse.Namespace) -> int:
    from robofume.cli import config_from_args
    from robofume.data.bridge import BridgeMapping, import_bridge

    cfg = config_from_args(args)
    defaults = BridgeMapping()
    mapping = BridgeMapping(
        image_size=args.image_size or cfg.env.image_size,
        action_dim=args.action_dim or cfg.env.action_dim,
        xyz_scale=args.xyz_scale or getattr(cfg.env, "max_ee_step", defaults.xyz_scale),
        rot_scale=args.rot_scale or getattr(cfg.env, "max_yaw_step", defaults.rot_scale),
    )
    stats = import_bridge(
        args.src,
        args.out,
        fmt=args.format,
        mapping=mapping,
        limit=args.limit,
        overwrite=args.overwrite,
    )
    if args.json:
        print_json(stats, indent=2)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add this area's subcommands to the ``robofume`` parser."""
    from robofume.cli import add_config_args

    p = sub.add_parser(
        "generate",
        help="generate the simulated dataset (prior, target, failures)",
        description="Write prior.hdf5, target.hdf5, failures.hdf5 and manifest.json with the "
        "scripted expert. Counts come from the data section of the config.",
    )
    add_config_args(p)
    p.add_argument("--out", default=None, help="output directory (default: data.dir)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (data.workers)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace episode files even with fewer episodes (by default that is refused)",
    )
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(handler=_generate)

    p = sub.add_parser("inspect", help="summarize an episode file or a dataset directory")
    p.add_argument("file", help="an .hdf5 episode file or a dataset directory")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_inspect)

    p = sub.add_parser("render", help="write one episode as a PNG strip or a GIF")
    p.add_argument("file", help="an .hdf5 episode file")
    p.add_argument("--episode", type=int, required=True, help="episode index")
    p.add_argument("--out", default=None, help="output path (default: <file>_episode<N>.png)")
    p.add_argument("--gif", action="store_true", help="animated GIF of every frame")
    p.add_argument("--max-frames", type=int, default=16, help="frames in the PNG strip")
    p.add_argument("--scale", type=int, default=1, help="integer upscaling of frames")
    p.set_defaults(handler=_render)

    p = sub.add_parser(
        "import-bridge",
        help="convert BridgeData V2 (numpy, TFRecord or RLDS) into an HDF5 episode file",
    )
    add_config_args(p)
    p.add_argument("src", help="a Bridge file or a directory searched recursively")
    p.add_argument("--out", required=True, help="output .hdf5 file")
    p.add_argument("--format", default="auto", choices=["auto", "npy", "tfrecord", "rlds"])
    p.add_argument("--image-size", type=int, default=None, help="default: env.image_size")
    p.add_argument(
        "--action-dim", type=int, default=None, choices=[4, 5], help="default: env.action_dim"
    )
    p.add_argument(
        "--xyz-scale",
        type=float,
        default=None,
        help="metres per step mapped to action 1.0 (default: env.max_ee_step)",
    )
    p.add_argument(
        "--rot-scale",
        type=float,
        default=None,
        help="radians per step mapped to yaw action 1.0 (default: env.max_yaw_step)",
    )
    p.add_argument(
        "--limit", type=_positive_int, default=None, help="import at most this many episodes"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out even if it holds more episodes than this import, or is not an "
        "episode file (without it, such a file is left untouched and the command fails)",
    )
    p.add_argument("--json", action="store_true", help="print import stats as JSON")
    p.set_defaults(handler=_import_bridge)
