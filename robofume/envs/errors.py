"""Errors raised by the robofume environments."""

from __future__ import annotations


class InvalidActionError(ValueError):
    """An action that is not a finite real vector of the action shape; nothing was applied."""


class RobotFaultError(RuntimeError):
    """The real robot cannot go on without a human (a motor error, the camera, the home pose)."""
