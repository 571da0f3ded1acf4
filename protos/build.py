"""The one build step for the wire schemas: ``python -m protos.build``.

Compiles every ``protos/*.proto`` into ``protos/<name>_pb2.py`` (+ ``_pb2_grpc.py``, ``.pyi``)
with grpcio-tools, so generated modules import as ``from protos import reward_pb2``.
Skips files whose generated code is newer than the schema.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

PROTO_DIR = Path(__file__).resolve().parent
ROOT = PROTO_DIR.parent


def _stale(proto: Path) -> bool:
    out = PROTO_DIR / f"{proto.stem}_pb2.py"
    grpc_out = PROTO_DIR / f"{proto.stem}_pb2_grpc.py"
    return (
        not (out.exists() and grpc_out.exists())
        or min(out.stat().st_mtime, grpc_out.stat().st_mtime) < proto.stat().st_mtime
    )


def build(force: bool = False) -> list[Path]:
    """Generate code for stale schemas; return the schemas that were compiled."""
    import grpc_tools
    from grpc_tools import protoc  # lazy: only the build step needs grpcio-tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    built = []
    for proto in sorted(PROTO_DIR.glob("*.proto")):
        if not force and not _stale(proto):
            continue
        rel = proto.relative_to(ROOT)
        code = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{ROOT}",
                f"-I{include}",
                f"--python_out={ROOT}",
                f"--pyi_out={ROOT}",
                f"--grpc_python_out={ROOT}",
                str(rel),
            ]
        )
        if code != 0:
            raise RuntimeError(f"protoc failed on {rel} (exit {code})")
        built.append(proto)
    return built


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    built = build(force="--force" in sys.argv)
    names = ", ".join(p.name for p in built) or "nothing (up to date)"
    log.info("protos: compiled %s", names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
