"""MuJoCo's rendering backend: importing it with the configured GL, and closing open renderers
at exit while the GL libraries are still loaded."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import weakref
from typing import Any

log = logging.getLogger(__name__)

_LIVE: weakref.WeakSet = weakref.WeakSet()
"""Open environments; closed at interpreter exit while the GL libraries are still loaded."""
_ATEXIT_REGISTERED = False


def _close_live_envs() -> None:
    for env in list(_LIVE):
        with contextlib.suppress(Exception):  # best effort at exit
            env.close()


def import_mujoco(backend: str):
    """Import mujoco after setting MUJOCO_GL (only when the environment does not set it).

    Also defaults Mesa's software rasteriser to one thread (LP_NUM_THREADS=1): at robofume's
    image sizes extra render threads cost more than they save, badly so on a busy machine.
    """
    os.environ.setdefault("MUJOCO_GL", backend)
    os.environ.setdefault("LP_NUM_THREADS", "1")
    try:
        import mujoco
    except (ImportError, AttributeError, OSError) as err:
        gl = os.environ["MUJOCO_GL"]
        raise RuntimeError(
            f"MuJoCo could not load its {gl!r} rendering backend ({err!r}); install the Mesa "
            "libraries (`make system-deps`: libegl1 libegl-mesa0 libgl1-mesa-dri for egl, "
            "libosmesa6 for osmesa) or choose another env.render_backend / MUJOCO_GL"
        ) from err

    logging.getLogger("OpenGL").setLevel(logging.WARNING)
    if mujoco.get_mju_user_warning() is None:
        # MuJoCo warnings go to the log instead of a MUJOCO_LOG.TXT in the working directory
        mujoco.set_mju_user_warning(lambda msg: log.warning("MuJoCo: %s", msg.strip()))
    return mujoco


def keep_until_exit(env: Any) -> None:
    """Close ``env`` (its renderer) at interpreter exit, before the GL display goes away."""
    global _ATEXIT_REGISTERED
    _LIVE.add(env)
    if not _ATEXIT_REGISTERED:
        # registered after MuJoCo's GL backend registered its own exit hook, so (atexit is
        # last-in first-out) open renderers are released before the GL display goes away
        atexit.register(_close_live_envs)
        _ATEXIT_REGISTERED = True
