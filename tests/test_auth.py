"""Signed policy weights: the actor runs only what the deployment's learner published.

The attacks are made as a client on the network would: straight into a real Reverb server
(its weights tables accept anything), read back by the actor's real puller and policy.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import stat
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from actor_support import actor_cfg, policy_variables, start_replay

from robofume.auth import WeightsRefused, check_weights, ensure_secret, sign_manifest
from robofume.policy import InferencePolicy
from robofume.replay_client.weights import WeightsClient
from robofume.weights_puller import REFUSAL_RECHECK_S, WeightsPuller


def test_secret_is_created_private_and_reused(tmp_path):
    path = tmp_path / "auth" / "secret"
    first = ensure_secret(path)
    assert len(first) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    assert ensure_secret(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("abc")
    with pytest.raises(RuntimeError, match="too short"):
        ensure_secret(path)


def _secret_in_a_child(path: str) -> bytes:
    return ensure_secret(Path(path))


def test_a_robot_pc_without_the_secret_stops_at_once_naming_the_file(tmp_path):
    """As a robot PC would run it: its own run directory and an empty HOME, no secret copied."""
    run_dir = tmp_path / "robot_pc_run"
    env = {**os.environ, "HOME": str(tmp_path / "home"), "PYTHONPATH": os.getcwd()}
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "deploy.command", "actor", "--preset", "smoke",
         "--deploy.run_dir", str(run_dir), "--deploy.replay_address", "10.9.9.9:8000"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    secret = (run_dir / "auth" / "secret").resolve()
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if " E " in line or "ERROR" in line]
    assert len(errors) == 1 and f"no deployment secret at {secret}" in errors[0], done.stderr
    assert "robofume up" in errors[0] and "--deploy.secret_path" in errors[0]
    assert not secret.exists()  # it made none of its own
    assert time.monotonic() - start < 60  # at once: no retries against the network


def test_the_head_makes_the_secret_once(tmp_path, capsys):
    from deploy.command import main
    from robofume.auth import SecretMissing, deployment_secret
    from robofume.config import load_config

    cfg = load_config("smoke", overrides=["--deploy.run_dir", str(tmp_path / "head")])
    with pytest.raises(SecretMissing):
        deployment_secret(cfg.deploy)
    assert main(["secret", "--preset", "smoke", "--deploy.run_dir", str(tmp_path / "head")]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == (tmp_path / "head" / "auth" / "secret").resolve()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = path.read_text()
    assert main(["secret", "--preset", "smoke", "--deploy.run_dir", str(tmp_path / "head")]) == 0
    assert path.read_text() == first and deployment_secret(cfg.deploy) == first.encode()


def test_the_link_token_derives_from_the_secret_unless_one_is_configured(tmp_path):
    import shutil

    from robofume.auth import deployment_secret, link_token, secret_path
    from robofume.config import load_config

    def cfg(run_dir, *more):
        return load_config("smoke", overrides=["--deploy.run_dir", str(run_dir), *more]).deploy

    head, robot, stranger = cfg(tmp_path / "head"), cfg(tmp_path / "robot"), cfg(tmp_path / "x")
    assert link_token(robot) == ""  # no secret yet: loopback only
    deployment_secret(head, create=True)
    deployment_secret(stranger, create=True)
    secret_path(robot).parent.mkdir(parents=True)
    shutil.copy(secret_path(head), secret_path(robot))  # what the README says to copy
    assert len(link_token(head)) == 40 and link_token(head) == link_token(robot)
    assert link_token(stranger) != link_token(head)
    assert deployment_secret(head).decode() not in link_token(head)  # not the secret itself
    assert link_token(cfg(tmp_path / "head", "--deploy.token", "t0k")) == "t0k"


def test_processes_creating_the_secret_at_once_all_read_one_whole_secret(tmp_path):
    """The deployment's processes start together: none may read a half-written secret."""
    ctx = multiprocessing.get_context("fork")
    for attempt in range(12):
        path = str(tmp_path / f"try{attempt}" / "secret")
        with ProcessPoolExecutor(4, mp_context=ctx) as pool:
            secrets = list(pool.map(_secret_in_a_child, [path] * 16))
        assert len(set(secrets)) == 1 and len(secrets[0]) == 64
        assert [p.name for p in Path(path).parent.iterdir()] == ["secret"]  # no temporaries


def _signed(secret: bytes, arrays: dict, version: int, session: int, config_hash: str | None):
    names = sorted(arrays)
    manifest = {"version": version, "session": session, "config_hash": config_hash,
                "names": names}  # fmt: skip
    return sign_manifest(secret, manifest, [arrays[n] for n in names])


def test_check_weights_refuses_each_kind_of_bad_weights():
    key, arrays = b"k" * 64, {"a": np.arange(4, dtype=np.float32), "b": np.ones((2, 2))}
    good = _signed(key, arrays, 7, 100, "h1")
    assert check_weights(key, good, arrays, "h1", None) == (100, 7)
    assert check_weights(key, good, arrays, "h1", (100, 7)) == (100, 7)  # same: allowed
    assert check_weights(key, good, arrays, "h1", (99, 9000)) == (100, 7)  # a later session

    def reason(manifest, variables=arrays, running=None, config_hash="h1") -> str:
        with pytest.raises(WeightsRefused) as err:
            check_weights(key, manifest, variables, config_hash, running)
        return err.value.reason

    assert reason(None) == "unsigned"
    assert reason({k: v for k, v in good.items() if k != "mac"}) == "unsigned"
    tampered = {**arrays, "a": np.zeros(4, np.float32)}
    assert reason(good, tampered) == "forged"
    assert reason({**good, "version": 8}) == "forged"  # a signed field changed
    assert reason(_signed(b"x" * 64, arrays, 7, 100, "h1")) == "forged"  # another secret
    assert reason(good, {"a": arrays["a"]}) == "forged"  # a variable dropped
    assert reason(_signed(key, arrays, 7, 100, None)) == "no_config_hash"
    assert reason(good, config_hash="h2") == "config_hash"
    assert reason(good, running=(100, 8)) == "older"
    assert reason(good, running=(101, 0)) == "older"


def _forge(address: str, variables: dict, version: int, manifest_extra: dict) -> None:
    """What an attacker can do: write a weights item straight into Reverb."""
    client = WeightsClient(address)
    names = sorted(variables)
    arrays = [np.ascontiguousarray(variables[n]) for n in names]
    manifest = {"version": version, "names": names, "shapes": [list(a.shape) for a in arrays],
                "dtypes": [a.dtype.str for a in arrays], **manifest_extra}  # fmt: skip
    step = {"version": np.asarray(version, np.int64),
            "manifest": np.frombuffer(json.dumps(manifest).encode(), np.uint8).copy()}  # fmt: skip
    step.update({f"v{i:05d}": a for i, a in enumerate(arrays)})
    client._insert(step)


def test_actor_runs_only_authentic_newer_weights(tmp_path):
    from robofume.auth import deployment_secret

    cfg = actor_cfg(tmp_path)
    server = start_replay(cfg, tmp_path / "replay_ckpt")
    try:
        address = server.address
        secret = deployment_secret(cfg.deploy)
        learner = WeightsClient(address, secret=secret, session=2_000)
        policy = InferencePolicy(cfg)
        puller = WeightsPuller(WeightsClient(address), policy, cfg.hash, secret, 0.05, address)

        def check(version: int) -> None:
            puller._refused_at.clear()  # do not wait REFUSAL_RECHECK_S between attempts
            puller.check_once()
            assert puller.learner_version == version

        genuine = policy_variables(cfg, seed=1)
        learner.publish(genuine, 10, cfg.hash)
        check(10)
        assert policy.version == 10 and puller.running == (2_000, 10)
        before = {k: v.clone() for k, v in policy.model.state_dict().items()}

        zeros = {k: np.zeros_like(v) for k, v in genuine.items()}
        attacks = {
            "unsigned": lambda v: _forge(address, zeros, v, {}),
            "forged": lambda v: _forge(
                address, zeros, v, {"config_hash": cfg.hash, "session": 9_999, "mac": "00" * 32}
            ),
            "no_config_hash": lambda v: _forge_signed_without_hash(address, secret, zeros, v),
            "config_hash": lambda v: WeightsClient(address, secret=secret).publish(
                zeros, v, "0123456789ab"
            ),
            "older": lambda v: WeightsClient(address, secret=secret, session=1_000).publish(
                zeros, v, cfg.hash
            ),
            "malformed": lambda v: _forge_malformed(address, v),
        }
        for n, (reason, attack) in enumerate(attacks.items()):
            attack(999_990 + n)
            check(999_990 + n)
            assert puller.refusals[reason] == 1, (reason, dict(puller.refusals))
            assert policy.version == 10, reason  # still running the genuine weights
            for key, value in policy.model.state_dict().items():
                assert bool((value == before[key]).all()), (reason, key)
            assert f"v{999_990 + n}" in puller.last_error
        assert sorted(puller.refused) == [999_990 + n for n in range(len(attacks))]

        # a learner resumed from an older checkpoint: a new session, a smaller version
        resumed = WeightsClient(address, secret=secret, session=3_000)
        resumed.publish(policy_variables(cfg, seed=2), 5, cfg.hash)
        check(5)
        assert policy.version == 5 and puller.running == (3_000, 5)
        assert REFUSAL_RECHECK_S >= 1.0
    finally:
        server.stop(checkpoint=False)


def test_a_config_mismatch_names_the_fields_that_differ(tmp_path):
    """The head ran with an override the robot PC was not given: the refusal says which."""
    from robofume.auth import deployment_secret
    from robofume.config.base import hashed_values

    robot = actor_cfg(tmp_path)
    head = robot.replace(
        learner=dataclasses.replace(robot.learner, utd_ratio=robot.learner.utd_ratio * 2),
        reward=dataclasses.replace(robot.reward, threshold=0.7),
    )
    assert head.hash != robot.hash
    server = start_replay(robot, tmp_path / "replay_ckpt")
    try:
        address, secret = server.address, deployment_secret(robot.deploy)
        learner = WeightsClient(address, secret=secret, session=2_000)
        learner.publish(policy_variables(robot), 10, head.hash, config=hashed_values(head))
        puller = WeightsPuller(
            WeightsClient(address), InferencePolicy(robot), robot.hash, secret, 0.05, address,
            config_values=hashed_values(robot),
        )  # fmt: skip
        puller.check_once()
        assert puller.refusals["config_hash"] == 1 and puller.running is None
        error = puller.last_error
        utd = robot.learner.utd_ratio
        assert f"learner.utd_ratio: {utd * 2!r} there, {utd!r} here" in error
        assert "reward.threshold: 0.7 there" in error
        assert "actor." not in error and "deploy." not in error  # process-local: not compared
    finally:
        server.stop(checkpoint=False)


def _forge_signed_without_hash(address, secret, variables, version) -> None:
    names = sorted(variables)
    arrays = [np.ascontiguousarray(variables[n]) for n in names]
    manifest = {"version": version, "session": 5_000, "config_hash": None, "names": names,
                "shapes": [list(a.shape) for a in arrays],
                "dtypes": [a.dtype.str for a in arrays]}  # fmt: skip
    manifest = sign_manifest(secret, manifest, arrays)
    step = {"version": np.asarray(version, np.int64),
            "manifest": np.frombuffer(json.dumps(manifest).encode(), np.uint8).copy()}  # fmt: skip
    step.update({f"v{i:05d}": a for i, a in enumerate(arrays)})
    WeightsClient(address)._insert(step)


def _forge_malformed(address, version) -> None:
    step = {"version": np.asarray(version, np.int64),
            "manifest": np.frombuffer(b"{not json", np.uint8).copy(),
            "v00000": np.zeros(3, np.float32)}  # fmt: skip
    WeightsClient(address)._insert(step)


def test_publish_is_signed_end_to_end(tmp_path):
    cfg = actor_cfg(tmp_path)
    server = start_replay(cfg, tmp_path / "replay_ckpt")
    try:
        client = WeightsClient(server.address, secret=b"s" * 64, session=int(time.time()))
        client.publish({"w": np.ones(3, np.float32)}, 4, "h")
        fetched = client.fetch()
        assert fetched.manifest["mac"] and fetched.manifest["session"] == client.session
        assert check_weights(b"s" * 64, fetched.manifest, fetched.variables, "h", None)
        with pytest.raises(WeightsRefused, match="not signed with this deployment's secret"):
            check_weights(b"t" * 64, fetched.manifest, fetched.variables, "h", None)
    finally:
        server.stop(checkpoint=False)


def test_status_shows_refused_weights():
    from deploy.status import format_report

    actor = {"state": "running", "weights_refusals": {"forged": 2, "older": 1},
             "last_error": "refusing policy weights v9: wrong authenticator"}  # fmt: skip
    report = {"run_dir": "r", "config_hash": "h", "phases": None, "reward": [], "learner": None,
              "replay": {"address": "127.0.0.1:8000", "healthy": True},
              "actors": {"actor_0": actor}}  # fmt: skip
    text = format_report(report)
    assert "REFUSED policy weights: 2 forged, 1 older" in text
    assert "wrong authenticator" in text
