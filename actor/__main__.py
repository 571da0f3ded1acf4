"""``python -m actor --preset ... [--config_path ...]``: same as ``robofume actor``."""

from __future__ import annotations

import sys

from deploy.command import main

if __name__ == "__main__":
    sys.exit(main(["actor", *sys.argv[1:]]))
