"""A fake ``cv2.VideoCapture``: a 640x480 BGR test pattern that changes every frame."""

from __future__ import annotations

from typing import ClassVar

import numpy as np


class FakeVideoCapture:
    opened_indices: ClassVar[list[int]] = []

    def __init__(self, index=0, *args):
        self.index = index
        self.frames = 0
        self.fail_next = 0
        """Reads to fail next (a dropped USB frame)."""
        self.available = index >= 0
        self.released = False
        FakeVideoCapture.opened_indices.append(index)

    def isOpened(self):
        return self.available and not self.released

    def read(self):
        if self.fail_next > 0:
            self.fail_next -= 1
            return False, None
        self.frames += 1
        frame = np.zeros((480, 640, 3), np.uint8)
        frame[..., 0] = 200  # blue in BGR
        frame[:, 80:560, 2] = (self.frames * 7) % 256  # red, the centre square only
        return True, frame

    def set(self, prop, value):
        return True

    def get(self, prop):
        return 0.0

    def release(self):
        self.released = True
