"""Logging setup and progress bars that cooperate with log lines."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


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


def progress(iterable: Iterable[T] | None = None, **kwargs) -> Iterator[T]:
    """A tqdm bar on stderr; silent when ROBOFUME_NO_PROGRESS is set (CI logs)."""
    kwargs.setdefault("disable", bool(os.environ.get("ROBOFUME_NO_PROGRESS")))
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("file", sys.stderr)
    return tqdm(iterable, **kwargs)
