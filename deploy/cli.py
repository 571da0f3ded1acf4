"""`robofume up`, `robofume down`, `robofume status`."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time

from robofume.cli import print_json
from robofume.run_dir import RunDir

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    from robofume.cli import add_config_args

    up = sub.add_parser(
        "up", help="start the cluster and TensorBoard, then run the missing phases inside it"
    )
    add_config_args(up)
    up.add_argument(
        "--skip-prepare",
        action="store_true",
        help="do not generate data / fine-tune / pre-train (they must exist)",
    )
    up.add_argument("--no-tensorboard", action="store_true", help="do not start TensorBoard")
    up.add_argument(
        "--wait",
        type=float,
        default=0.0,
        help="stay attached this many seconds (0: return at once)",
    )
    up.set_defaults(handler=_up)

    down = sub.add_parser("down", help="stop everything `up` started, and nothing else")
    add_config_args(down)
    down.set_defaults(handler=_down)

    status = sub.add_parser("status", help="health and counters of every component")
    add_config_args(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--no-probe", action="store_true", help="heartbeat files only; do not contact the servers"
    )
    status.set_defaults(handler=_status)

    registry = sub.add_parser(
        "registry",
        help="the head's registry: remote components report and discover the cluster here",
        description="Started by `robofume up` on the head (deploy.head_port). A robot PC or "
        "another node points --deploy.head_address at it.",
    )
    add_config_args(registry)
    registry.set_defaults(handler=_registry)

    secret = sub.add_parser(
        "secret",
        help="create this deployment's secret on the head (as `up` does); print where it is",
        description="For a deployment started by hand (robofume replay serve, learner, actor "
        "...) instead of `robofume up`: run it once on the head, then copy the file it names "
        "to every other machine. Processes other than the head never create the secret.",
    )
    add_config_args(secret)
    secret.set_defaults(handler=_secret)


def _registry(args: argparse.Namespace) -> int:
    from deploy.registry import serve

    serve(_config(args))
    return 0


def _secret(args: argparse.Namespace) -> int:
    from robofume.auth import deployment_secret, secret_path
    from robofume.cli import config_from_args

    cfg = config_from_args(args)
    deployment_secret(cfg.deploy, create=True)
    print(secret_path(cfg.deploy))
    return 0


def _config(args: argparse.Namespace):
    from deploy.up import resolve_addresses
    from robofume.cli import config_from_args

    return resolve_addresses(config_from_args(args))


def _up(args: argparse.Namespace) -> int:
    """Head and TensorBoard first, then the phase runner; returns once the runner beats."""
    from deploy import cluster, phases
    from deploy.up import (
        load_state,
        process_alive,
        save_state,
        start_registry,
        start_tensorboard,
        write_resolved_config,
    )
    from robofume.auth import deployment_secret

    cfg = _config(args)
    state = load_state(cfg)
    session = cfg.deploy.session or (
        state.get("session") if process_alive(state.get("runner_pid")) else None
    )  # joining a running `up` keeps its session; a new `up` starts one
    session = session or time.strftime("%Y%m%d-%H%M%S")
    cfg = cfg.replace(deploy=dataclasses.replace(cfg.deploy, session=session))
    state["session"] = session
    paths = RunDir.of(cfg)
    write_resolved_config(cfg)
    deployment_secret(cfg.deploy, create=True)  # the head makes it, before anyone reads it
    started = cluster.start_head(cfg.deploy)
    state["started_head"] = bool(state.get("started_head")) or started
    state.update(
        num_actors=cfg.deploy.num_actors,
        num_reward_replicas=cfg.deploy.num_reward_replicas,
        preset=cfg.name,
    )
    save_state(cfg, state)
    if not process_alive(state.get("registry_pid")):  # remote components report here
        state["registry_pid"] = start_registry(cfg)
        save_state(cfg, state)
    if not args.no_tensorboard and not process_alive(state.get("tensorboard_pid")):
        state["tensorboard_pid"] = start_tensorboard(cfg)
        save_state(cfg, state)
    if process_alive(state.get("runner_pid")):
        log.info("phase runner: already running (pid %d)", state["runner_pid"])
    else:
        state["runner_pid"] = phases.start_runner(cfg, skip_prepare=args.skip_prepare)
        save_state(cfg, state)
    host = cfg.deploy.bind_host if cfg.deploy.bind_host != "0.0.0.0" else "127.0.0.1"
    preset = args.preset or cfg.name
    from robofume.ray_auth import token_path

    print(
        f"\nrobofume is running ({cfg.name}, config {cfg.hash})\n"
        f"  TensorBoard    http://{host}:{cfg.deploy.tensorboard_port}\n"
        f"  Ray dashboard  http://127.0.0.1:{cfg.deploy.dashboard_port}  (it asks for a token: "
        f"paste the contents of {token_path(cfg.deploy)})\n"
        f"  run dir        {paths.root}  (logs, checkpoints, status)\n"
        f"  session        {session}  (TensorBoard runs {paths.tb('<component>')})\n"
        f"  phases         generate, reward, pretrain, online: see status "
        f"(log {paths.logs / 'phases.log'})\n"
        f"  replay         {cfg.deploy.replay_address}\n"
        f"  reward         {', '.join(cfg.deploy.reward_addresses)}\n"
        f"  status         robofume status --preset {preset}\n"
        f"  stop           make down PRESET={preset}\n"
    )
    if args.wait > 0:
        from deploy.status import collect, format_report

        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline:
            time.sleep(min(10.0, max(0.0, deadline - time.monotonic())))
            log.info("status:\n%s", format_report(collect(cfg)))
    return 0


def _down(args: argparse.Namespace) -> int:
    from deploy import cluster, launch
    from deploy.up import load_state, stop_pid

    cfg = _config(args)
    state = load_state(cfg)
    if not state:
        log.info("nothing to stop: no %s in %s", "up.json", cfg.deploy.run_dir)
        return 0
    stop_pid(state.get("runner_pid"))  # first: it must not start services we stop below
    if cluster.head_running(cfg.deploy):
        cluster.connect(cfg.deploy)
        stopped = launch.stop_services(launch.service_names(cfg, state))
        log.info("stopped: %s", ", ".join(stopped) or "no running services")
    stop_pid(state.get("tensorboard_pid"))
    stop_pid(state.get("registry_pid"))
    if state.get("started_head"):
        import ray

        ray.shutdown()  # our own driver connection first (no-op when not connected)
        count = cluster.stop_head(cfg.deploy)
        log.info("stopped the Ray head this run started (%d processes)", count)
    RunDir.of(cfg).up_state.unlink(missing_ok=True)
    return 0


def _status(args: argparse.Namespace) -> int:
    """Heartbeat files and probes of the servers; it never joins the Ray cluster (no job)."""
    from deploy import cluster
    from deploy.status import collect, format_report

    cfg = _config(args)
    report = collect(cfg, live=not args.no_probe)
    report["ray"] = {
        "head": cluster.head_address(cfg.deploy),
        "running": cluster.head_running(cfg.deploy),
    }
    if args.json:
        print_json(report, indent=1, default=str)
    else:
        print(format_report(report))
        for name, st in sorted(report.get("services", {}).items()):
            state = st.get("state", "?")
            if not st.get("alive"):
                state += f" (no heartbeat for {st.get('age_s', '?')} s: its process is gone)"
            if st.get("restarts"):
                state += f" (restarted {st['restarts']} time(s) by Ray)"
            err = f"  error: {st['error'].strip().splitlines()[-1]}" if st.get("error") else ""
            print(f"service  {name:<10} {state}{err}")
    return 0
