"""Screenshots of the live TensorBoard dashboard, taken with headless Chromium.

```bash
make up PRESET=smoke                       # or any running robofume, TensorBoard on :6006
sudo apt-get install chromium              # once (Debian's package)
python -m benchmarks.dashboard_screenshot --out benchmarks/dashboard_headline.png
python -m benchmarks.dashboard_screenshot --filter 'reward|replay' --out /tmp/reward.png
```

Before taking the picture it asks TensorBoard's own HTTP API which runs and tags it serves and
logs them, so a screenshot of an empty dashboard is caught as such (the script fails when the
filter matches no tag). The view is TensorBoard's Time Series dashboard with a tag filter:
the default shows the ``Headline/`` scalars (ground-truth and predicted success per task over
env steps, episodes, UTD, policy lag) with the camera frames and episode strips below them.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

log = logging.getLogger("benchmarks.dashboard_screenshot")

HEADLINE_FILTER = "Headline/(true|predicted)_success|Headline/episodes|actor/camera|episode_strip"


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.loads(answer.read())


def served_tags(base: str) -> dict[str, list[str]]:
    """Run -> scalar and image tags, from TensorBoard's HTTP API."""
    found: dict[str, list[str]] = {}
    for plugin in ("scalars", "images"):
        tags = _get(f"{base}/data/plugin/{plugin}/tags")
        assert isinstance(tags, dict)
        for run, names in tags.items():
            found.setdefault(run, []).extend(sorted(names))
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:6006", help="TensorBoard's address")
    p.add_argument("--filter", default=HEADLINE_FILTER, help="tag filter (a regex)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/dashboard_headline.png"))
    p.add_argument("--size", default="1500,2000", help="window width,height in pixels")
    p.add_argument("--wait-ms", type=int, default=30000, help="time the page gets to render")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname).1s %(message)s")

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        log.error("no chromium on PATH; install Debian's package: sudo apt-get install chromium")
        return 2
    base = args.url.rstrip("/")
    tags = served_tags(base)
    pattern = re.compile(args.filter)
    shown = {run: [t for t in names if pattern.search(t)] for run, names in tags.items()}
    shown = {run: names for run, names in shown.items() if names}
    for run, names in sorted(tags.items()):
        log.info("run %s: %d tags", run, len(names))
    if not shown:
        log.error("no tag matches %r: the dashboard would be empty", args.filter)
        return 1
    log.info("the view shows %d tags in %d runs", sum(map(len, shown.values())), len(shown))
    query = urllib.parse.urlencode({"tagFilter": args.filter, "darkMode": "false"})
    page = f"{base}/?{query}#timeseries"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        chromium,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--window-size={args.size}",
        f"--virtual-time-budget={args.wait_ms}",
        f"--screenshot={args.out.resolve()}",
        page,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0 or not args.out.exists():
        log.error("chromium failed (%d): %s", done.returncode, done.stderr[-2000:])
        return 1
    log.info("screenshot of %s in %s", page, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
