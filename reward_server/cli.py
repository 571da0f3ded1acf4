"""``robofume reward finetune | evaluate | serve | replicas``."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

from robofume.cli import print_json
from robofume.run_dir import RunDir

log = logging.getLogger(__name__)


def _clean_errors(fn: Callable[[argparse.Namespace], int]) -> Callable:
    """Bad input (missing data, unreadable checkpoint, a public address without a token) ends
    with one clear line, exit 1."""

    @functools.wraps(fn)
    def wrapper(args: argparse.Namespace) -> int:
        from reward_server.model import CheckpointError
        from robofume.data.errors import DatasetError
        from robofume.grpc_utils import InsecureBindError

        try:
            return fn(args)
        except (DatasetError, CheckpointError, FileNotFoundError, InsecureBindError) as err:
            log.error("%s", err)
            return 1

    return wrapper


def _finetune_tb(cfg, out: Path) -> Path:
    """Inside an `up` session, the session's ``reward_finetune`` run; by hand, ``out``."""
    return RunDir.of(cfg).tb("reward_finetune") if cfg.deploy.session else out / "tensorboard"


def default_checkpoint(cfg) -> Path:
    """``reward.checkpoint``, else ``<run_dir>/reward``."""
    return Path(cfg.reward.checkpoint) if cfg.reward.checkpoint else RunDir.of(cfg).reward


@_clean_errors
def _finetune(args: argparse.Namespace) -> int:
    from reward_server.finetune import finetune
    from robofume.cli import config_from_args

    cfg = config_from_args(args)
    out = Path(args.out) if args.out else default_checkpoint(cfg)
    data_dir = args.data or cfg.data.dir
    result = finetune(
        cfg.reward,
        data_dir,
        out,
        steps=args.steps,
        device=args.device or cfg.reward.device,
        tb_dir=None if args.no_tensorboard else _finetune_tb(cfg, out),
    )
    summary = {
        "checkpoint": str(result.checkpoint),
        "version": result.model.version,
        "threshold": result.model.threshold,
        "heldout": result.heldout,
        "train_seconds": round(result.train_seconds, 1),
    }
    if args.json:
        print_json(summary, indent=2)
    else:
        log.info("checkpoint %s (version %s)", result.checkpoint, result.model.version)
    return 0


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


@_clean_errors
def _evaluate(args: argparse.Namespace) -> int:
    from reward_server.backends import load_reward_model
    from reward_server.evaluate import evaluate
    from reward_server.model import checkpoint_file

    model = load_reward_model(args.checkpoint, device=args.device or "auto")
    panel = (
        Path(args.panel)
        if args.panel
        else checkpoint_file(args.checkpoint).parent / ("worst_mistakes.png")
    )
    report = evaluate(model, args.data, split=args.split, panel=panel)
    if args.json:
        print_json(report, indent=2)
        return 0
    m = report["labels"]
    print(f"reward model {report['model_version']} on {report['split']} episodes of {args.data}")
    print(f"frames {report['frames']}, episodes {report['episodes']}")
    print(f"threshold {report['threshold']:.4f} (target FPR {report['target_fpr']})")
    print("                 FPR    FNR    accuracy  precision")
    print(
        f"labels        {_fmt(m['false_positive_rate']):>6} {_fmt(m['false_negative_rate']):>6}"
        f" {_fmt(m['accuracy']):>9} {_fmt(m['precision']):>9}"
    )
    if "simulator" in report:
        s = report["simulator"]
        print(
            f"simulator     {_fmt(s['false_positive_rate']):>6} "
            f"{_fmt(s['false_negative_rate']):>6} {_fmt(s['accuracy']):>9} "
            f"{_fmt(s['precision']):>9}"
        )
    print(f"worst mistakes: {report.get('panel')}")
    return 0


@_clean_errors
def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from reward_server.backends import load_reward_model
    from reward_server.server import RewardServer
    from robofume.cli import config_from_args
    from robofume.status import write_status

    start = time.perf_counter()
    cfg = config_from_args(args)
    checkpoint = args.checkpoint or default_checkpoint(cfg)
    model = load_reward_model(checkpoint, device=args.device or cfg.reward.device)
    host = args.host or cfg.deploy.bind_host
    port = cfg.deploy.reward_port if args.port is None else args.port

    async def main() -> None:
        from robofume.auth import link_token

        d = cfg.deploy
        server = RewardServer(
            model, cfg.reward, link_token(d), d.tls_cert, d.tls_key, d.allow_insecure_remote
        )
        bound = await server.start(host, port)
        log.info("ready in %.1f s", time.perf_counter() - start)
        from reward_server.telemetry import ServerTelemetry

        telemetry = ServerTelemetry(server, RunDir.of(cfg).tb("reward_serve"))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        name = f"reward_{bound}"
        while not stop.is_set():
            write_status(
                cfg.deploy.run_dir,
                name,
                {
                    "address": f"{host}:{bound}",
                    "version": model.version,
                    "requests": server.requests,
                    "frames": server.batcher.frames,
                    "batches": server.batcher.batches,
                    "state": "serving",
                },
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 5.0)
        log.info("stopping reward server")
        telemetry.close()
        await server.stop(grace=2.0)
        write_status(cfg.deploy.run_dir, name, {"state": "stopped", "version": model.version})

    asyncio.run(main())
    return 0


@_clean_errors
def _replicas(args: argparse.Namespace) -> int:
    import ray

    from reward_server.ray_replicas import launch_replicas
    from robofume.cli import config_from_args
    from robofume.ray_auth import use_run_token

    cfg = config_from_args(args)
    use_run_token(cfg.deploy)  # the run's token, as `robofume up` gave the head
    ray.init(address=args.ray_address or cfg.deploy.ray_address, log_to_driver=False)
    checkpoint = args.checkpoint or default_checkpoint(cfg)
    replicas = launch_replicas(checkpoint, cfg, num_replicas=args.num, port=args.port)
    print(json.dumps({"addresses": replicas.addresses}))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        replicas.stop()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``robofume reward ...`` to the ``robofume`` parser."""
    from robofume.cli import add_config_args

    reward = sub.add_parser("reward", help="the VLM success classifier and its gRPC server")
    cmds = reward.add_subparsers(dest="reward_command", metavar="ACTION", required=True)

    p = cmds.add_parser("finetune", help="fine-tune the reward model on demos and failures")
    add_config_args(p)
    p.add_argument("--data", default=None, help="dataset directory (default: data.dir)")
    p.add_argument("--steps", type=int, default=None, help="steps (default: reward.steps)")
    p.add_argument("--out", default=None, help="checkpoint dir (default: <run_dir>/reward)")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default: reward.device)")
    p.add_argument("--no-tensorboard", action="store_true", help="skip TensorBoard logging")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=_finetune)

    p = cmds.add_parser("evaluate", help="FP/FN/accuracy/precision on held-out episodes")
    p.add_argument("checkpoint", help="checkpoint directory or model.pt")
    p.add_argument("--data", required=True, help="dataset directory")
    p.add_argument(
        "--split",
        choices=("auto", "heldout", "all"),
        default="auto",
        help="auto: the held-out episodes if DIR is the training data, else all episodes",
    )
    p.add_argument("--panel", default=None, help="PNG of the worst mistakes (default: beside it)")
    p.add_argument("--device", default=None, help="cpu, cuda or auto")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=_evaluate)

    p = cmds.add_parser("serve", help="serve one replica over gRPC (standalone)")
    add_config_args(p)
    p.add_argument("--checkpoint", default=None, help="default: <run_dir>/reward")
    p.add_argument("--host", default=None, help="bind address (default: deploy.bind_host)")
    p.add_argument("--port", type=int, default=None, help="default: deploy.reward_port")
    p.add_argument("--device", default=None, help="cpu, cuda or auto")
    p.set_defaults(handler=_serve)

    p = cmds.add_parser("replicas", help="start N replicas as Ray actors and keep them up")
    add_config_args(p)
    p.add_argument("--checkpoint", default=None, help="default: <run_dir>/reward")
    p.add_argument("--num", type=int, default=None, help="default: deploy.num_reward_replicas")
    p.add_argument("--port", type=int, default=None, help="first port (0: any free ports)")
    p.add_argument("--ray-address", default=None, help="default: deploy.ray_address")
    p.set_defaults(handler=_replicas)
