"""Logging setup and progress bars that cooperate with log lines."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

T = TypeVar("T")

PROGRESS_FILE_ENV = "ROBOFUME_PROGRESS_FILE"
"""When set, every progress bar also writes its state (done/total/rate/ETA) to this JSON file:
how `robofume up`'s phase runner sees the progress of the phase it runs in a subprocess."""


class _TqdmHandler(logging.StreamHandler):
    """Writes log lines through tqdm so they do not break an active progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def setup_logging(level: int = logging.INFO) -> None:
    """Configure root logging once: ``time level name: message`` to stderr."""
    root = logging.getLogger()
    if any(isinstance(h, _TqdmHandler) for h in root.handlers):
        root.setLevel(level)
        return
    handler = _TqdmHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname).1s %(name)s: %(message)s", "%H:%M:%S")
    )
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("absl", "urllib3", "filelock", "h5py", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _Discard:
    """A text stream that drops everything: a reporting bar that must not draw."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return None


class _ReportingBar(tqdm):
    """A tqdm bar that also writes its state to a JSON file (at most once a second)."""

    def __init__(self, *args: Any, report_to: Path, **kwargs: Any) -> None:
        self._report_to = report_to
        self._reported = 0.0
        super().__init__(*args, **kwargs)

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._reported < 1.0:
            return
        self._reported = now
        from robofume.status import write_json

        d = self.format_dict
        done, total, rate = int(d["n"]), d.get("total"), d.get("rate")
        if rate is None and d["elapsed"] > 0:
            rate = done / d["elapsed"]
        eta = (total - done) / rate if total and rate else None
        state = {"desc": d.get("prefix") or "", "done": done, "total": total, "rate": rate}
        with contextlib.suppress(OSError):  # reporting must never break the work it reports on
            write_json(self._report_to, {**state, "eta_s": eta, "elapsed_s": d["elapsed"]})

    def display(self, msg: str | None = None, pos: int | None = None) -> Any:
        self.report()
        return super().display(msg, pos)

    def close(self) -> None:
        if not getattr(self, "disable", True):
            self.report(force=True)
        super().close()


def progress(iterable: Iterable[T] | None = None, **kwargs) -> Iterator[T]:
    """A tqdm bar on stderr; silent when ROBOFUME_NO_PROGRESS is set (CI logs).

    Under ``ROBOFUME_PROGRESS_FILE`` the bar also reports to that file, drawn or not.
    """
    quiet = bool(os.environ.get("ROBOFUME_NO_PROGRESS"))
    kwargs.setdefault("dynamic_ncols", True)
    report_to = os.environ.get(PROGRESS_FILE_ENV)
    if report_to and not kwargs.get("disable"):
        kwargs["disable"] = False
        kwargs.setdefault("file", _Discard() if quiet else sys.stderr)
        return _ReportingBar(iterable, report_to=Path(report_to), **kwargs)
    kwargs.setdefault("disable", quiet)
    kwargs.setdefault("file", sys.stderr)
    return tqdm(iterable, **kwargs)
