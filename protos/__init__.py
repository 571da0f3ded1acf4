"""Wire schemas (``*.proto``) and their generated code.

Generated modules are not committed: ``make protos`` (or ``python -m protos.build``) writes
them, and importing this package regenerates any that are missing or older than their schema,
so an installed checkout always has code that matches its ``.proto`` files.
"""

from __future__ import annotations


def _ensure_generated() -> None:
    try:
        from protos.build import build

        build()
    except ImportError:  # grpcio-tools absent: use whatever was generated before
        pass


_ensure_generated()
