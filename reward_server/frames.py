"""Frames in a reward request: their size, the pixel limits, decoding to uint8 arrays.

Everything here runs before a frame reaches the model; a frame that is malformed, too large
or of another size than its neighbours raises :class:`BadRequest` (INVALID_ARGUMENT), naming
the frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from protos import reward_pb2


class BadRequest(ValueError):
    """A request the server rejects with INVALID_ARGUMENT (the message says why)."""


ENCODED_FORMATS = ("PNG", "JPEG")


def frame_size(frame: reward_pb2.Frame, i: int) -> tuple[int, int]:
    """(height, width) of a frame without decoding its pixels (encoded: the image header)."""
    kind = frame.WhichOneof("image")
    if kind == "raw":
        return frame.raw.height, frame.raw.width
    if kind == "encoded":
        import io

        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(frame.encoded)) as image:  # reads the header only
                fmt, (w, h) = image.format, image.size
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
            raise BadRequest(
                f"frame {i}: cannot decode the encoded image's header (PNG or JPEG expected)"
            ) from None
        if fmt not in ENCODED_FORMATS:
            raise BadRequest(f"frame {i}: encoded as {fmt}; send PNG or JPEG")
        return h, w
    raise BadRequest(f"frame {i}: has no image (set raw or encoded)")


def check_pixels(frames: Sequence[reward_pb2.Frame], max_frame: int, max_request: int) -> None:
    """BadRequest when a frame or the request would decode to more pixels than allowed."""
    total = 0
    for i, frame in enumerate(frames):
        h, w = frame_size(frame, i)
        if h * w > max_frame:
            raise BadRequest(
                f"frame {i}: {h}x{w} is {h * w} pixels; the limit is {max_frame} per frame "
                "(reward.max_frame_pixels)"
            )
        total += h * w
        if total > max_request:
            raise BadRequest(
                f"frames 0-{i} hold {total} pixels; the limit is {max_request} per request "
                "(reward.max_request_pixels): send fewer or smaller frames"
            )


def decode_frame(frame: reward_pb2.Frame, i: int) -> np.ndarray:
    """One Frame message -> uint8 (H, W, 3), or BadRequest naming the frame and the problem."""
    kind = frame.WhichOneof("image")
    if kind == "raw":
        raw = frame.raw
        if raw.dtype not in ("", "uint8"):
            raise BadRequest(f"frame {i}: dtype {raw.dtype!r} is not supported; send uint8")
        h, w, c = raw.height, raw.width, raw.channels
        if c != 3:
            raise BadRequest(f"frame {i}: shape {h}x{w}x{c}; frames must be RGB (H x W x 3)")
        if h == 0 or w == 0:
            raise BadRequest(f"frame {i}: empty shape {h}x{w}x{c}")
        if len(raw.data) != h * w * c:
            raise BadRequest(
                f"frame {i}: {len(raw.data)} bytes of data but shape {h}x{w}x{c} needs {h * w * c}"
            )
        return np.frombuffer(raw.data, np.uint8).reshape(h, w, c)
    if kind == "encoded":
        import cv2

        buf = np.frombuffer(frame.encoded, np.uint8)
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
        if image is None:
            raise BadRequest(f"frame {i}: cannot decode the encoded image (PNG or JPEG expected)")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    raise BadRequest(f"frame {i}: has no image (set raw or encoded)")


def stack_frames(frames: Sequence[np.ndarray]) -> np.ndarray:
    """(N, H, W, 3); all frames of one request must share a size."""
    first = frames[0].shape
    for i, f in enumerate(frames):
        if f.shape != first:
            raise BadRequest(
                f"frame {i}: shape {'x'.join(map(str, f.shape))} differs from frame 0's "
                f"{'x'.join(map(str, first))}; one request holds frames of one size"
            )
    return np.stack(frames)
