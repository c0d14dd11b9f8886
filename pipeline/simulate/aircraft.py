"""Aircraft plan forms built from real dimensions (FACTS.md: manufacturer / public reference figures).

Each type is fuselage + swept wings + horizontal tail (+ engine pods, rotors) as convex polygons in metres, nose at
+x. Good enough at 10 m: an An-124 covers ~7x7 pixels, an Il-76 ~5x5, a fighter ~2x2. Class follows DESIGN.md:
``large_aircraft`` if 35 m long or more, fighters ``small_aircraft``, rotorcraft ``helicopter``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.simulate.canvas import Polygon, rect, rotated_rect


@dataclass(frozen=True)
class AircraftType:
    name: str
    length_m: float
    span_m: float  # wingspan, or main rotor diameter for helicopters
    fuselage_w: float
    wing_root_x: float  # leading edge of the wing root, metres forward of the centre
    root_chord: float
    tip_chord: float
    sweep_deg: float  # leading-edge sweep
    tail_span: float
    tail_chord: float
    engines: str = "wing"  # "wing" (under-wing pods), "rear" (fuselage-mounted), "none"
    rotor_blades: int = 0
    coaxial: bool = False
    typical_paint: tuple[str, ...] = ("grey", "white")

    @property
    def cls(self) -> str:
        if self.rotor_blades:
            return "helicopter"
        return "large_aircraft" if self.length_m >= 35.0 else "small_aircraft"


_WG, _GW = ("white", "grey"), ("grey", "white")

CATALOGUE: dict[str, AircraftType] = {
    t.name: t
    for t in (
        # transports / airliners (FACTS.md: An-124 69.1 x 73.3, Il-76MD 46.6 x 50.5, Il-62 53.1 x 43.2,
        # Tu-154 47.9 x 37.6, Tu-214 46.1 x 42.0)
        AircraftType("An-124", 69.1, 73.3, 7.3, 8.0, 15.0, 4.5, 32.0, 32.6, 8.0, "wing", typical_paint=_WG),
        AircraftType("Il-76", 46.6, 50.5, 4.8, 5.0, 10.5, 3.5, 25.0, 17.4, 5.0, "wing", typical_paint=_GW),
        AircraftType("Il-62", 53.1, 43.2, 3.8, 2.0, 9.5, 2.8, 35.0, 12.2, 4.0, "rear", typical_paint=_WG),
        AircraftType("Tu-154", 47.9, 37.6, 3.8, 3.5, 8.5, 2.3, 35.0, 13.4, 4.0, "rear", typical_paint=_WG),
        AircraftType("Tu-214", 46.1, 42.0, 4.0, 4.0, 8.0, 2.0, 28.0, 15.0, 4.0, "wing", typical_paint=_WG),
        # fighters / strike (Su-24 wings spread 17.6 m)
        AircraftType("Su-24", 22.7, 17.6, 3.6, 2.0, 5.0, 1.8, 16.0, 7.8, 3.2, "none", typical_paint=("grey", "blue")),
        AircraftType("Su-34", 23.3, 14.7, 4.4, 1.0, 7.5, 1.8, 42.0, 8.0, 3.0, "none", typical_paint=("grey", "blue")),
        AircraftType("Su-35", 21.9, 15.3, 4.0, 0.5, 8.0, 1.8, 42.0, 9.9, 3.2, "none", typical_paint=("grey", "blue")),
        # helicopters (Mi-8 fuselage 18.2, rotor 21.3; Ka-52 rotor 14.5, fuselage ~13.5)
        AircraftType("Mi-8", 18.2, 21.3, 2.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, "none", rotor_blades=5,
                     typical_paint=("camo", "grey")),
        AircraftType("Ka-52", 13.5, 14.5, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, "none", rotor_blades=3, coaxial=True,
                     typical_paint=("camo", "dark")),
    )
}

# Paint schemes as (B02, B03, B04, B08) surface reflectance; calibrated ranges in CALIBRATION.md.
PAINTS: dict[str, tuple[float, float, float, float]] = {
    "white": (0.50, 0.52, 0.53, 0.55),  # airliner / An-124 white
    "grey": (0.31, 0.33, 0.34, 0.37),  # light transport grey (Il-76MD, VKS An-124)
    "blue": (0.17, 0.19, 0.19, 0.23),  # Su-34/Su-35 blue-grey
    "camo": (0.08, 0.10, 0.10, 0.20),  # green/brown camouflage (Su-24, Mi-8)
    "dark": (0.05, 0.055, 0.055, 0.09),  # dark grey / black (Ka-52)
}


def _wing(t: AircraftType, side: float, span: float | None = None) -> Polygon:
    """One wing as a trapezoid from the fuselage side to the tip (side = +1 right, -1 left)."""
    semi = (span or t.span_m) / 2.0
    y0 = t.fuselage_w / 2.0 * 0.8
    le_root = t.wing_root_x
    le_tip = le_root - np.tan(np.deg2rad(t.sweep_deg)) * (semi - y0)
    return np.array([
        [le_root, side * y0],
        [le_tip, side * semi],
        [le_tip - t.tip_chord, side * semi],
        [le_root - t.root_chord, side * y0],
    ])


def _tail(t: AircraftType, side: float) -> Polygon:
    semi = t.tail_span / 2.0
    sweep = np.tan(np.deg2rad(min(t.sweep_deg + 5, 45))) * semi
    x_le = -t.length_m / 2.0 + max(sweep + 0.5 * t.tail_chord, t.tail_chord) + 0.3
    return np.array([
        [x_le, side * 0.3],
        [x_le - sweep, side * semi],
        [x_le - sweep - t.tail_chord * 0.5, side * semi],
        [x_le - t.tail_chord, side * 0.3],
    ])


def plan_form(t: AircraftType, *, scale: float = 1.0, rotor_phase_deg: float = 0.0,
              swept_back: bool = False) -> list[Polygon]:
    """Convex polygons (metres, nose at +x) of the aircraft seen from above."""
    L = t.length_m
    if t.rotor_blades:
        shapes = _helicopter(t, rotor_phase_deg)
    else:
        nose_len = min(0.12 * L, 2.5 * t.fuselage_w)
        hw = t.fuselage_w / 2.0
        body = rect(L - nose_len - 0.06 * L, t.fuselage_w, cx=(0.06 * L - nose_len) / 2.0)
        nose = np.array([[L / 2.0, 0.0], [L / 2.0 - nose_len * 0.4, hw * 0.8], [L / 2.0 - nose_len, hw],
                         [L / 2.0 - nose_len, -hw], [L / 2.0 - nose_len * 0.4, -hw * 0.8]])
        tailcone = np.array([[-L / 2.0 + 0.06 * L, hw], [-L / 2.0, hw * 0.3], [-L / 2.0, -hw * 0.3],
                             [-L / 2.0 + 0.06 * L, -hw]])
        span = t.span_m * (0.6 if swept_back and t.name == "Su-24" else 1.0)
        shapes = [body, nose, tailcone, _wing(t, 1.0, span), _wing(t, -1.0, span), _tail(t, 1.0), _tail(t, -1.0)]
        if t.engines == "wing":
            n_per_side = 2 if t.span_m > 40 else 1
            for side in (1.0, -1.0):
                for k in range(n_per_side):
                    y = side * (0.22 + 0.17 * k) * t.span_m
                    x = t.wing_root_x - np.tan(np.deg2rad(t.sweep_deg)) * abs(y) + 0.25 * t.root_chord
                    shapes.append(rect(0.09 * L + 1.5, 0.045 * t.span_m + 0.6, cx=x, cy=y))
        elif t.engines == "rear":
            for side in (1.0, -1.0):
                shapes.append(rect(0.13 * L, 1.8, cx=-0.30 * L, cy=side * (hw + 0.9)))
    if scale != 1.0:
        shapes = [s * scale for s in shapes]
    return shapes


def _helicopter(t: AircraftType, phase_deg: float) -> list[Polygon]:
    L = t.length_m
    cabin = rect(0.55 * L, t.fuselage_w, cx=0.18 * L)
    boom = rect(0.45 * L, 0.8 if not t.coaxial else 1.4, cx=-0.27 * L)
    shapes = [cabin, boom]
    r = t.span_m / 2.0
    hub_x = 0.12 * L
    sets = 2 if t.coaxial else 1
    for s in range(sets):
        for k in range(t.rotor_blades):
            ang = phase_deg + 360.0 * k / t.rotor_blades + s * 60.0
            a = np.deg2rad(ang)
            cx, cy = hub_x + np.cos(a) * r / 2.0, np.sin(a) * r / 2.0
            shapes.append(rotated_rect(r, 0.55, ang, cx=cx, cy=cy))
    if not t.coaxial:  # tail rotor
        shapes.append(rect(0.6, 3.9, cx=-0.49 * L, cy=0.9))
    else:
        shapes.append(rect(1.0, 3.0, cx=-0.47 * L))
    return shapes


def paint_reflectance(name: str, rng: np.random.Generator) -> np.ndarray:
    """Per-band reflectance of a paint scheme with weathering / illumination jitter."""
    base = np.array(PAINTS[name], dtype=np.float32)
    return (base * rng.uniform(0.8, 1.2) * rng.uniform(0.95, 1.05, 4)).astype(np.float32)


def choose_paint(t: AircraftType, rng: np.random.Generator, wide: bool = False) -> str:
    """The type's usual paints (the first most often); ``wide`` (training chips) lets any paint occur.

    Training chips draw any paint half the time: an independent renderer showed a detector trained on mostly
    white transports misses grey and dark ones (benchmarks/ROBUSTNESS.md).
    """
    if wide and rng.random() < 0.5:
        return str(rng.choice(list(PAINTS)))
    return t.typical_paint[0] if rng.random() < 0.7 else str(rng.choice(list(t.typical_paint)))
