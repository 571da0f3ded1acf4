"""``robofume replay serve`` (run the server) and ``robofume replay info`` (table counters)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from robofume.cli import add_config_args, config_from_args, print_json

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add this area's subcommands to the ``robofume`` parser."""
    parser = sub.add_parser("replay", help="the Reverb replay server")
    replay_sub = parser.add_subparsers(dest="replay_command", metavar="ACTION", required=True)

    serve = replay_sub.add_parser(
        "serve",
        help="run the replay server until SIGINT/SIGTERM (checkpoints on the way out; "
        "SIGUSR1 checkpoints now)",
    )
    add_config_args(serve)
    serve.add_argument("--port", type=int, default=None, help="default: deploy.replay_port")
    serve.add_argument(
        "--checkpoint-dir",
        default=None,
        help="Reverb checkpoints (restored on start); default replay.checkpoint_dir or "
        "<run_dir>/replay",
    )
    serve.set_defaults(handler=_serve)

    info = replay_sub.add_parser("info", help="sizes and counters of a running server")
    add_config_args(info)
    info.add_argument("--address", default=None, help="default: deploy.replay_address")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(handler=_info)


def _serve(args: argparse.Namespace) -> int:
    from replay.server import start_replay_server
    from robofume.replay_client.errors import ReplayConfigMismatchError

    cfg = config_from_args(args)
    port = args.port if args.port is not None else cfg.deploy.replay_port
    try:
        server = start_replay_server(cfg, port=port, checkpoint_dir=args.checkpoint_dir)
    except ReplayConfigMismatchError as err:
        log.error("%s", err)
        return 2
    done = threading.Event()
    checkpoint_now = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping the replay server", signum)
        done.set()

    def _checkpoint(signum: int, _frame: object) -> None:
        checkpoint_now.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGUSR1, _checkpoint)
    log.info("replay server ready on port %d, all interfaces (config %s)", server.port, cfg.hash)
    while not done.wait(0.1):
        if checkpoint_now.is_set():
            checkpoint_now.clear()
            log.info("SIGUSR1: checkpointing now")
            try:
                server.checkpoint()
            except Exception as err:
                log.error("replay checkpoint failed: %s", err)
    server.stop(checkpoint=True)
    return 0


def _info(args: argparse.Namespace) -> int:
    from robofume.replay_client.errors import ReplayUnavailableError
    from robofume.replay_client.info import stats_at

    cfg = config_from_args(args)
    address = args.address or cfg.deploy.replay_address
    try:
        stats = stats_at(address, timeout_s=cfg.replay.rpc_timeout_s)
    except ReplayUnavailableError as err:
        log.error("%s", err)
        return 1
    if args.json:
        print_json({"address": address, **stats})
    else:
        for key, value in stats.items():
            print(f"{key:>20}: {value}")
    return 0
