"""The tabletop layout: places (regions on the table) and objects built from primitive geoms.

Pure data, no MuJoCo import. World frame: the robot base sits at the origin facing +x, the table
top is the plane z = 0. The camera faces the robot from the far side of the table, so "left" and
"right" in instructions are as seen in the camera image: the left bin is at -y (the robot's
right), the right bin at +y. Every object's body frame has its origin at the
centre of its footprint on the table, so a resting object has body z = 0 (on the table) or the
bin floor height (in a bin). The gripper closes along world y, so every object is graspable
across its y extent at ``grasp_z`` (height of the grasp point above the body origin).
"""

from __future__ import annotations

from dataclasses import dataclass

RGBA = tuple[float, float, float, float]

BIN_FLOOR = 0.006
"""Height of the inside floor of a bin above the table (m)."""
BIN_WALL_HEIGHT = 0.045
"""Height of a bin's rim above the table (m)."""


@dataclass(frozen=True)
class Place:
    """A region of the table where objects start or must be put."""

    name: str
    """Identifier used in task names (``left_bin``)."""
    center: tuple[float, float]
    """Centre of the region (x, y) in metres."""
    half: tuple[float, float]
    """Half extents (x, y) of the region: an object's origin must lie inside to count."""
    start_jitter: float
    """Objects starting here are placed uniformly within +-start_jitter of the centre (m)."""
    floor: float = 0.0
    """Height of the surface objects rest on (m)."""
    is_bin: bool = False
    """Bins have walls (drawn and collided); flat places are coloured patches."""
    rgba: RGBA = (0.8, 0.8, 0.8, 1.0)
    """Colour of the bin walls or the patch."""

    def contains(self, x: float, y: float) -> bool:
        """Whether (x, y) lies inside the region."""
        return abs(x - self.center[0]) <= self.half[0] and abs(y - self.center[1]) <= self.half[1]


PLACES: dict[str, Place] = {
    p.name: p
    for p in (
        Place(
            "centre",
            (0.30, 0.0),
            (0.055, 0.055),
            0.025,
            rgba=(0.93, 0.93, 0.93, 1.0),
        ),
        Place(
            "left_bin",
            (0.30, -0.17),
            (0.07, 0.065),
            0.012,
            floor=BIN_FLOOR,
            is_bin=True,
            rgba=(0.35, 0.55, 0.95, 1.0),
        ),
        Place(
            "right_bin",
            (0.30, 0.17),
            (0.07, 0.065),
            0.012,
            floor=BIN_FLOOR,
            is_bin=True,
            rgba=(0.98, 0.6, 0.2, 1.0),
        ),
        Place(
            "plate",
            (0.43, 0.0),
            (0.045, 0.045),
            0.012,
            rgba=(1.0, 1.0, 1.0, 1.0),
        ),
        Place(
            "mat",
            (0.18, 0.0),
            (0.05, 0.05),
            0.015,
            rgba=(0.3, 0.7, 0.35, 1.0),
        ),
    )
}
"""Every named place of the tabletop."""

DISTRACTOR_SPOTS: tuple[tuple[float, float], ...] = (
    (0.44, 0.15),
    (0.44, -0.15),
    (0.16, 0.16),
    (0.16, -0.16),
)
"""Free table spots (outside every place) where distractor objects are put."""


@dataclass(frozen=True)
class Geom:
    """One primitive of an object, in the object's body frame."""

    type: str
    """MuJoCo geom type: box, cylinder, sphere, capsule."""
    size: tuple[float, ...]
    """MuJoCo size (half extents / radius, half length)."""
    pos: tuple[float, float, float]
    """Position in the body frame (m)."""
    rgba: RGBA
    """Colour."""
    euler: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Orientation (radians, MuJoCo xyz Euler)."""


@dataclass(frozen=True)
class ObjectSpec:
    """An object the robot can pick up."""

    name: str
    """Identifier used in task names (``vase``)."""
    geoms: tuple[Geom, ...]
    """Its primitives."""
    grasp_z: float
    """Height of the grasp point above the body origin (m)."""


_X90 = (0.0, 1.5707963, 0.0)  # cylinder axis along x


def _o(name: str, grasp_z: float, *geoms: Geom) -> ObjectSpec:
    return ObjectSpec(name, tuple(geoms), grasp_z)


PURPLE = (0.55, 0.25, 0.8, 1.0)
WOOD = (0.42, 0.22, 0.1, 1.0)
IRON = (0.22, 0.22, 0.26, 1.0)
STEEL = (0.78, 0.78, 0.82, 1.0)

OBJECTS: dict[str, ObjectSpec] = {
    o.name: o
    for o in (
        # --- target objects ---
        _o(
            "vase",
            0.04,
            Geom("cylinder", (0.024, 0.0325), (0, 0, 0.0325), PURPLE),
            Geom("cylinder", (0.013, 0.0125), (0, 0, 0.0775), PURPLE),
            Geom("cylinder", (0.019, 0.005), (0, 0, 0.095), PURPLE),
        ),
        _o(
            "bench",
            0.043,
            Geom("box", (0.056, 0.022, 0.007), (0, 0, 0.043), WOOD),
            Geom("box", (0.007, 0.022, 0.018), (0.042, 0, 0.018), WOOD),
            Geom("box", (0.007, 0.022, 0.018), (-0.042, 0, 0.018), WOOD),
        ),
        _o(
            "dumbbell",
            0.032,
            Geom("cylinder", (0.009, 0.05), (0, 0, 0.032), STEEL, _X90),
            Geom("box", (0.014, 0.032, 0.032), (0.045, 0, 0.032), IRON),
            Geom("box", (0.014, 0.032, 0.032), (-0.045, 0, 0.032), IRON),
        ),
        # --- prior objects ---
        _o(
            "cube",
            0.03,
            Geom("box", (0.025, 0.025, 0.025), (0, 0, 0.025), (0.85, 0.12, 0.12, 1)),
        ),
        _o(
            "can",
            0.04,
            Geom("cylinder", (0.022, 0.04), (0, 0, 0.04), (0.1, 0.18, 0.55, 1)),
        ),
        _o(
            "block",
            0.032,
            Geom("box", (0.045, 0.018, 0.02), (0, 0, 0.02), (0.95, 0.85, 0.1, 1)),
        ),
        _o(
            "bottle",
            0.04,
            Geom("cylinder", (0.02, 0.035), (0, 0, 0.035), (0.1, 0.6, 0.2, 1)),
            Geom("cylinder", (0.009, 0.015), (0, 0, 0.085), (0.1, 0.6, 0.2, 1)),
        ),
        _o(
            "brick",
            0.032,
            Geom("box", (0.035, 0.02, 0.02), (0, 0, 0.02), (0.95, 0.4, 0.7, 1)),
            Geom("cylinder", (0.009, 0.005), (0.017, 0, 0.045), (0.95, 0.4, 0.7, 1)),
            Geom("cylinder", (0.009, 0.005), (-0.017, 0, 0.045), (0.95, 0.4, 0.7, 1)),
        ),
        _o(
            "mug",
            0.04,
            Geom("cylinder", (0.026, 0.035), (0, 0, 0.035), (0.95, 0.95, 0.9, 1)),
            Geom("box", (0.008, 0.005, 0.02), (0.032, 0, 0.037), (0.95, 0.95, 0.9, 1)),
        ),
        _o(
            "house",
            0.03,
            Geom("box", (0.025, 0.025, 0.02), (0, 0, 0.02), (1.0, 0.55, 0.1, 1)),
            Geom(
                "box",
                (0.025, 0.0177, 0.0177),
                (0, 0, 0.04),
                (0.75, 0.2, 0.1, 1),
                (0.7853982, 0, 0),
            ),
        ),
        _o(
            "barrel",
            0.03,
            Geom("cylinder", (0.03, 0.025), (0, 0, 0.025), (0.1, 0.8, 0.85, 1)),
        ),
    )
}
"""Every object of the tabletop, target objects first."""
