"""What every benchmark shares: a description of the machine and writing its RESULTS section."""

from __future__ import annotations

import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (or what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def gpu_name() -> str | None:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # no torch or a broken driver: report no GPU
        return None


def machine(load: bool = True) -> str:
    """``2-core CPU (AMD EPYC ...), no GPU; load average 4.2 at start``."""
    gpu = gpu_name()
    text = f"{os.cpu_count()}-core CPU ({cpu_name()}), {gpu or 'no GPU'}"
    if load and hasattr(os, "getloadavg"):
        text += f"; load average {os.getloadavg()[0]:.1f} at start"
    return text


def record_section(heading: str, section: str, results: Path = RESULTS) -> None:
    """Replace the ``heading`` section of RESULTS.md with ``section`` (or append it)."""
    text = results.read_text() if results.exists() else "# Benchmark results\n"
    if heading + "\n" in text:
        head, rest = text.split(heading + "\n", 1)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1 :] if nxt >= 0 else ""
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    results.write_text(text)
