"""Rates in status are computed over recent time, so an idle component shows 0."""

from __future__ import annotations

from collections import deque

from robofume.status import window_rate


def test_window_rate_falls_to_zero_when_idle():
    history: deque[tuple[float, int]] = deque(maxlen=3)
    assert window_rate(history, 0.0, 0) is None
    assert window_rate(history, 5.0, 500) == 100.0  # a burst
    assert window_rate(history, 10.0, 500) == 50.0
    assert window_rate(history, 15.0, 500) == 0.0  # the burst left the window: idle


def test_status_reads_service_heartbeats_and_never_joins_ray(tmp_path):
    """`robofume status` must not appear as a Ray job: it reads the services' heartbeat files."""
    import json
    import subprocess
    import sys
    import time

    from robofume.status import write_status

    run = tmp_path / "run"
    write_status(run, "service_learner", {"state": "running", "threads": 1, "error": None})
    write_status(run, "service_actor_0", {"state": "crashed", "error": "Traceback\nValueError: x"})
    stale = json.loads((run / "status" / "service_actor_0.json").read_text())
    stale["time"] = time.time() - 600  # its process died ten minutes ago
    (run / "status" / "service_actor_0.json").write_text(json.dumps(stale))
    code = (
        "import json, sys; from deploy.command import main; "
        "main(['status', '--json', '--no-probe', '--preset', 'smoke', "
        f"'--deploy.run_dir', {str(run)!r}, '--deploy.ray_port', '1']); "
        "assert 'ray' not in sys.modules, 'status imported ray'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    services = json.loads(out.stdout)["services"]
    assert services["learner"]["alive"] and services["learner"]["threads"] == 1
    assert not services["actor_0"]["alive"] and services["actor_0"]["state"] == "crashed"
