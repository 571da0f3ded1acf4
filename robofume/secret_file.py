"""Private files holding a random secret (the deployment secret, the Ray token).

The processes of one deployment start together and each reads the secret when it first needs
it, so creation must be atomic: the secret is written to a private temporary file beside the
target and hard-linked into place. A reader never sees a half-written file, and of two
processes that create it at the same moment one wins and the other reads the winner's secret.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_MODE = 0o600


def read_or_create_secret(path: Path, nbytes: int, what: str) -> str:
    """The secret in ``path`` (stripped text); ``nbytes`` random bytes as hex when missing.

    An existing file readable by others is made private (with a warning). ``what`` names the
    file in log lines and errors.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(nbytes))
                out.flush()
                os.fsync(out.fileno())
            os.link(tmp, path)  # atomic; fails when another process got there first
            log.info("created %s in %s", what, path)
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s %s was readable by others (mode %o); now %o", what, path, mode,
                    PRIVATE_MODE)  # fmt: skip
        path.chmod(PRIVATE_MODE)
    return path.read_text().strip()
