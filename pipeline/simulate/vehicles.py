"""Trucks (sub-pixel, 7-12 m x 2.5 m) and the paint that makes them visible at 10 m.

A moving truck is painted once per band at its position at that band's acquisition instant
(physics.band_displacements_px), which produces the blue-green-red "rainbow" of Fisser et al. (2022).
Parked trucks get no offset. Cars (4.5 x 1.8 m) are clutter, never truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.simulate.canvas import Polygon, rect


@dataclass(frozen=True)
class TruckType:
    name: str
    length_m: float
    width_m: float


# FACTS.md: Ural-4320 7.4 x 2.5, KamAZ-5350 8.0 x 2.5, MAZ-537 9.0 x 2.9; a semitrailer rig is ~12-16 m at S2 scale.
TRUCKS: tuple[TruckType, ...] = (
    TruckType("Ural-4320", 7.4, 2.5),
    TruckType("KamAZ-5350", 8.0, 2.5),
    TruckType("MAZ-537", 9.0, 2.9),
    TruckType("tractor-trailer", 12.0, 2.5),
    TruckType("semitrailer", 16.0, 2.55),
)

# (B02, B03, B04, B08) reflectance of truck tops: white/silver trailer roofs and tarpaulins are much brighter than
# asphalt (~0.07-0.10); olive military paint is darker than concrete and only faintly visible. CALIBRATION.md.
TRUCK_PAINTS: dict[str, tuple[float, float, float, float]] = {
    "white": (0.52, 0.54, 0.55, 0.57),  # white trailer roofs / cabs (peaks match the s2td_braunschweig rainbows)
    "silver": (0.36, 0.37, 0.38, 0.40),
    "tarp_khaki": (0.22, 0.26, 0.29, 0.34),  # dusty sand-coloured canvas
    "olive": (0.07, 0.09, 0.09, 0.18),
    "red": (0.08, 0.08, 0.25, 0.30),
    "blue": (0.20, 0.14, 0.08, 0.18),
}
MILITARY_PAINT_WEIGHTS = {"tarp_khaki": 0.4, "olive": 0.2, "silver": 0.2, "white": 0.2}  # grey/white cabs, tarps
CIVIL_PAINT_WEIGHTS = {"white": 0.4, "silver": 0.25, "tarp_khaki": 0.1, "olive": 0.05, "red": 0.1, "blue": 0.1}


def truck_shapes(length: float, width: float) -> list[Polygon]:
    """Cab + cargo body (one rectangle each; the gap between them is below the resolution anyway)."""
    cab = min(2.3, 0.3 * length)
    return [rect(cab, width * 0.95, cx=length / 2.0 - cab / 2.0), rect(length - cab - 0.3, width,
                                                                    cx=-(cab + 0.3) / 2.0)]


def car_shapes() -> list[Polygon]:
    return [rect(4.5, 1.8)]


def pick_paint(rng: np.random.Generator, military: bool) -> np.ndarray:
    weights = MILITARY_PAINT_WEIGHTS if military else CIVIL_PAINT_WEIGHTS
    names = list(weights)
    p = np.array([weights[n] for n in names])
    name = names[int(rng.choice(len(names), p=p / p.sum()))]
    base = np.array(TRUCK_PAINTS[name], dtype=np.float32)
    return (base * rng.uniform(0.8, 1.2) * rng.uniform(0.95, 1.05, 4)).astype(np.float32)


def pick_truck(rng: np.random.Generator, military: bool) -> TruckType:
    if military:
        return TRUCKS[int(rng.choice(4, p=[0.3, 0.35, 0.15, 0.2]))]
    return TRUCKS[int(rng.choice(5, p=[0.1, 0.15, 0.05, 0.3, 0.4]))]
