"""``--json``: stdout carries the JSON only, whatever libraries print while the command runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from robofume.cli import json_stdout, print_json


def test_chatter_goes_to_stderr_and_only_the_json_to_stdout(capfd):
    with json_stdout():
        print("Loaded pretrained weights for some-backbone")  # Python-level chatter
        os.write(1, b"a C extension's notice\n")  # file-descriptor-level chatter
        print_json({"ok": True, "n": 3})
    print("after the command, stdout is stdout again")
    out, err = capfd.readouterr()
    first, _, rest = out.partition("}\n")
    assert json.loads(first + "}") == {"ok": True, "n": 3}
    assert rest == "after the command, stdout is stdout again\n"
    assert "Loaded pretrained weights" in err and "C extension" in err


def test_a_json_command_parses_when_a_library_prints_on_stdout(tmp_path):
    """The real command in a fresh process, with a handler that prints before its JSON."""
    script = tmp_path / "chatty.py"
    script.write_text(
        "import os, sys\n"
        "import robofume.envs.cli as envs_cli\n"
        "real = envs_cli.cmd_tasks\n"
        "def chatty(args):\n"
        "    print('Loaded pretrained weights for efficientnet-lite0')\n"
        "    os.write(1, b'native chatter\\n')\n"
        "    return real(args)\n"
        "envs_cli.cmd_tasks = chatty\n"
        "from deploy.command import main\n"
        "sys.exit(main(['tasks', '--json']))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # would fail on the chatter lines
    assert "put the vase in the correct bin" in report["target"]
    assert "efficientnet-lite0" in done.stderr and "native chatter" in done.stderr
