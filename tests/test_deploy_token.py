"""The Ray auth token lives in the run directory, never in the home directory."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from robofume.config import DeployConfig
from robofume.ray_auth import TOKEN_PATH_ENV, ensure_token, ray_auth_env, token_path

ROOT = Path(__file__).resolve().parents[1]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_token_is_created_in_the_run_dir_private_and_reused(tmp_path):
    cfg = DeployConfig(run_dir=str(tmp_path / "run"))
    env = ray_auth_env(cfg)
    path = tmp_path / "run" / "ray" / "auth_token"
    assert env == {"RAY_AUTH_MODE": "token", TOKEN_PATH_ENV: str(path.resolve())}
    token = path.read_text()
    assert len(token) == 64 and int(token, 16) >= 0  # 256 random bits, hex
    assert _mode(path) == 0o600
    assert ray_auth_env(cfg) == env and path.read_text() == token  # reused, not replaced
    other = ray_auth_env(DeployConfig(run_dir=str(tmp_path / "other")))
    assert Path(other[TOKEN_PATH_ENV]).read_text() != token  # one token per run directory


def test_relative_run_dir_gives_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert token_path(DeployConfig(run_dir="runs/x")) == tmp_path / "runs/x/ray/auth_token"
    chosen = DeployConfig(run_dir="runs/x", ray_token_path=str(tmp_path / "shared.token"))
    assert token_path(chosen) == tmp_path / "shared.token"


def test_existing_token_is_kept_and_made_private(tmp_path):
    path = tmp_path / "auth_token"
    path.write_text("abc123")
    path.chmod(0o644)
    assert ensure_token(path) == path
    assert path.read_text() == "abc123" and _mode(path) == 0o600


def test_empty_token_file_is_an_error(tmp_path):
    path = tmp_path / "auth_token"
    path.write_text("")
    with pytest.raises(RuntimeError, match="empty"):
        ensure_token(path)


def test_ray_uses_the_run_token_over_home_and_environment(tmp_path):
    """With another token in ~/.ray and in RAY_AUTH_TOKEN, Ray still loads the run's token."""
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("f" * 64)
    script = (
        "import json, ray\n"
        "from ray._raylet import AuthenticationTokenLoader\n"
        "from robofume.config import DeployConfig\n"
        "from robofume.ray_auth import use_run_token\n"
        f"env = use_run_token(DeployConfig(run_dir={str(tmp_path / 'run')!r}))\n"
        "print(json.dumps({'env': env,"
        " 'token': AuthenticationTokenLoader.instance().get_raw_token()}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "HOME": str(home), "RAY_AUTH_TOKEN": "e" * 64},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    run_token = (tmp_path / "run" / "ray" / "auth_token").read_text()
    assert result["token"] == run_token
    assert result["env"][TOKEN_PATH_ENV] == str(tmp_path / "run" / "ray" / "auth_token")
