"""An independent Sentinel-2 scene renderer, used only to *evaluate* detectors (never to train them).

Why: the learned detector is trained on pipeline/simulate; scoring it on that simulator's scenes measures how well it
learned the simulator, not the world. This module shares no code, constants or assumptions with pipeline/simulate
(it imports only the interchange types and writers) and makes its own modelling choices:

- backgrounds: multi-scale Gaussian-filtered noise with a per-scene roughness; land cover (desert, scrub, irrigated
  parcels, centre pivots, bare fields, water) with spectra drawn from wide ranges; polygons rasterised at 2.5 m;
- airfields (runway, parallel taxiway, links, aprons, hardstands, hangars) in most scenes;
- aircraft as analytic plan forms (super-elliptic fuselage, swept trapezoid wings, tailplane, engine pods; rotor
  blades for helicopters) sampled at 0.5 m, painted white / grey / dark, random or apron-row headings, sun shadows;
- the optics: an Airy-like or pixel-integrated Gaussian PSF of 0.8-1.6 px FWHM, slightly anisotropic, per-band jitter;
- moving trucks (12-20 m x 2.5 m, 15-30 m/s, singles and convoys) on straight and curved roads, each band sampled at its
  own instant (published-style offsets B02 0 s, B08 0.264 s, B03 0.527 s, B04 1.005 s); moving cars as faint
  distractors; parked trucks in lots; cars in car parks; buildings with bright roofs;
- clouds as thresholded noise with a band parallax and ground shadows (valid=False under them), haze as a per-band
  gain and a Rayleigh-like offset, faint column striping, Gaussian noise 0.001-0.004 per band.

Truth: point objects at the object centre; a moving truck's centre is its position at mid-exposure between B02 and B04
(the middle of its "rainbow"). Objects whose centre is not valid (cloud, cloud shadow) are left out of the truth.

CLI: python -m benchmarks.independent_renderer --n 20 --seed 900 --out DIR  (writes DIR/<name>.tif + .truth.geojson)
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio import features
from scipy import ndimage, special
from shapely.geometry import LineString, Point, Polygon
from shapely.geometry.base import BaseGeometry

from pipeline.georef import object_at_pixel
from pipeline.geotiff import write_scene
from pipeline.objects import feature_collection, object_feature, write_geojson
from pipeline.types import BAND_NAMES, Acquisition, MapObject, Scene

log = logging.getLogger(__name__)

SOURCE = "independent-renderer"
PX = 10.0  # metres per pixel
SUPER = 4  # surface polygons: 4 x 4 samples per pixel (2.5 m)
FINE = 20  # objects: 20 x 20 samples per pixel (0.5 m)
BAND_TIME_S = np.array([0.0, 0.527, 1.005, 0.264])  # exposure instant of B02, B03, B04, B08 (published-style figures)
MID_TIME_S = 0.5 * (BAND_TIME_S[0] + BAND_TIME_S[2])  # truth instant of a moving object: middle of its rainbow
RAYLEIGH = (490.0 / np.array([490.0, 560.0, 665.0, 842.0])) ** 4  # haze offset shape across the four bands

Shape = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (u along nose, v to the right) in metres -> inside mask

# Spectral ranges (B02, B03, B04, B08) low / high, drawn wide on purpose.
SPECTRA: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "desert": ((0.10, 0.15, 0.19, 0.24), (0.21, 0.29, 0.37, 0.46)),
    "scrub": ((0.04, 0.06, 0.07, 0.17), (0.09, 0.12, 0.15, 0.32)),
    "irrigated": ((0.02, 0.04, 0.02, 0.28), (0.05, 0.09, 0.06, 0.52)),
    "bare_field": ((0.07, 0.10, 0.13, 0.18), (0.14, 0.19, 0.25, 0.33)),
    "stubble": ((0.08, 0.11, 0.14, 0.21), (0.13, 0.17, 0.22, 0.32)),
    "water": ((0.03, 0.03, 0.01, 0.003), (0.07, 0.07, 0.04, 0.02)),
    "concrete": ((0.15, 0.17, 0.18, 0.20), (0.30, 0.32, 0.34, 0.37)),
    "asphalt": ((0.04, 0.05, 0.055, 0.06), (0.09, 0.10, 0.11, 0.13)),
    "gravel": ((0.13, 0.16, 0.19, 0.23), (0.22, 0.26, 0.30, 0.34)),
    "roof_metal": ((0.28, 0.29, 0.30, 0.30), (0.58, 0.60, 0.60, 0.60)),
    "roof_dark": ((0.04, 0.05, 0.05, 0.06), (0.10, 0.11, 0.11, 0.14)),
    "roof_tile": ((0.06, 0.08, 0.15, 0.24), (0.10, 0.13, 0.28, 0.36)),
    "white_paint": ((0.42, 0.43, 0.43, 0.42), (0.66, 0.68, 0.68, 0.66)),
    "grey_paint": ((0.15, 0.16, 0.16, 0.17), (0.32, 0.33, 0.33, 0.35)),
    "dark_paint": ((0.03, 0.04, 0.04, 0.06), (0.08, 0.09, 0.09, 0.20)),
    "truck": ((0.22, 0.23, 0.23, 0.22), (0.55, 0.56, 0.56, 0.55)),
    "rotor": ((0.03, 0.03, 0.03, 0.04), (0.07, 0.07, 0.07, 0.09)),
    "cloud": ((0.42, 0.41, 0.40, 0.40), (0.80, 0.78, 0.77, 0.76)),
}
CAR_SPECTRA = ("white_paint", "grey_paint", "dark_paint", "roof_tile")


@dataclass(frozen=True)
class AircraftType:
    """A type's published size (length x span, or fuselage x rotor) and how it tends to be painted."""

    name: str
    cls: str
    length_m: float
    width_m: float
    kind: str  # jet | fighter | turboprop | heli
    engines: int = 2  # under-wing pods drawn for jets
    blades: int = 0  # rotor blades drawn for helicopters
    paints: tuple[float, float, float] = (0.3, 0.5, 0.2)  # P(white), P(grey), P(dark)


AIRCRAFT: tuple[AircraftType, ...] = (
    AircraftType("An-124", "large_aircraft", 69.1, 73.3, "jet", 4, (0.35, 0.45, 0.20)),
    AircraftType("Il-76MD", "large_aircraft", 46.6, 50.5, "jet", 4, (0.25, 0.55, 0.20)),
    AircraftType("Il-62", "large_aircraft", 53.1, 43.2, "jet", 0, (0.75, 0.20, 0.05)),
    AircraftType("Tu-154", "large_aircraft", 47.9, 37.6, "jet", 0, (0.70, 0.25, 0.05)),
    AircraftType("Tu-214", "large_aircraft", 46.1, 42.0, "jet", 2, (0.75, 0.20, 0.05)),
    AircraftType("A320", "large_aircraft", 37.6, 35.8, "jet", 2, (0.80, 0.15, 0.05)),
    AircraftType("Tu-22M3", "large_aircraft", 42.5, 34.3, "fighter", 0, (0.10, 0.50, 0.40)),
    AircraftType("Su-24", "small_aircraft", 22.7, 17.6, "fighter", 0, (0.05, 0.55, 0.40)),
    AircraftType("Su-34", "small_aircraft", 23.3, 14.7, "fighter", 0, (0.05, 0.60, 0.35)),
    AircraftType("Su-35", "small_aircraft", 21.9, 15.3, "fighter", 0, (0.05, 0.60, 0.35)),
    AircraftType("An-26", "small_aircraft", 23.8, 29.2, "turboprop", 2, (0.40, 0.45, 0.15)),
    AircraftType("An-72", "small_aircraft", 28.1, 31.9, "turboprop", 2, (0.35, 0.50, 0.15)),
    AircraftType("Mi-8", "helicopter", 18.2, 21.3, "heli", 0, 5, (0.05, 0.35, 0.60)),
    AircraftType("Ka-52", "helicopter", 13.5, 14.5, "heli", 0, 6, (0.02, 0.38, 0.60)),
)


@dataclass
class Sprite:
    """One object drawn at 0.5 m: a plan form at a centre (continuous pixel coords) with a paint and a height."""

    shape: Shape
    row: float
    col: float
    heading: float
    radius_m: float
    spec: np.ndarray
    height_m: float
    truth: dict | None = None  # MapObject fields (cls, type, ...) when the sprite is a truth object
    extra: dict = field(default_factory=dict)  # extra GeoJSON properties (paint, speed bucket...)


@dataclass
class Mover:
    """A vehicle travelling along a road line (pixel coords); its position depends on the band's instant."""

    road: LineString
    s_px: float  # arc length at t = 0
    direction: int  # +1 along the line, -1 against it
    speed_mps: float
    lane_m: float  # offset to the right of travel
    length_m: float
    width_m: float
    spec: np.ndarray
    height_m: float
    truth: bool
    extra: dict = field(default_factory=dict)

    def pose(self, t: float) -> tuple[float, float, float]:
        """(row, col, heading) at time t: arc-length motion along the road, kept in its lane."""
        s = self.s_px + self.direction * self.speed_mps * t / PX
        p = self.road.interpolate(s)
        a, b = self.road.interpolate(s - 0.5), self.road.interpolate(s + 0.5)
        dc, dr = (b.x - a.x) * self.direction, (b.y - a.y) * self.direction
        norm = math.hypot(dc, dr) or 1.0
        dc, dr = dc / norm, dr / norm
        heading = math.degrees(math.atan2(dc, -dr)) % 360.0
        right_c, right_r = -dr, dc  # 90 deg clockwise of travel on the map (rows grow southwards)
        lane = self.lane_m / PX
        return p.y + right_r * lane, p.x + right_c * lane, heading


@dataclass
class Rendered:
    """A rendered scene, its truth, extra per-object properties and the scene's drawn parameters."""

    scene: Scene
    truth: list[MapObject]
    extras: list[dict]
    meta: dict


# ----------------------------------------------------------------------------------------------- small helpers
def draw_spectrum(rng: np.random.Generator, name: str) -> np.ndarray:
    """A spectrum from a class's range: one brightness draw shared by the bands plus a small per-band jitter."""
    lo, hi = (np.array(x) for x in SPECTRA[name])
    k = np.clip(rng.uniform() + rng.uniform(-0.15, 0.15, 4), 0.0, 1.0)
    return (lo + k * (hi - lo)).astype(np.float32)


def fractal_noise(rng: np.random.Generator, size: int, scales: tuple[float, ...], beta: float) -> np.ndarray:
    """Zero-mean, unit-std noise: Gaussian-filtered white noise at several scales, weighted scale**beta."""
    out = np.zeros((size, size), np.float32)
    for s in scales:
        layer = ndimage.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), s, mode="wrap")
        out += (s**beta) * layer / (layer.std() + 1e-9)
    return (out - out.mean()) / (out.std() + 1e-9)


def to_px(oc: float, orow: float, heading: float, u: float, v: float) -> tuple[float, float]:
    """Local metres (u along heading, v to its right) around (col, row) -> pixel (col, row)."""
    th = math.radians(heading)
    east, north = u * math.sin(th) + v * math.cos(th), u * math.cos(th) - v * math.sin(th)
    return oc + east / PX, orow - north / PX


def rect_px(oc: float, orow: float, heading: float, length_m: float, width_m: float) -> Polygon:
    """A rectangle (length along heading) centred on (col, row), in pixel coordinates."""
    hl, hw = length_m / 2, width_m / 2
    return Polygon([to_px(oc, orow, heading, u, v) for u, v in ((hl, -hw), (hl, hw), (-hl, hw), (-hl, -hw))])


def poly_coverage(geom: BaseGeometry, size: int) -> tuple[slice, slice, np.ndarray] | None:
    """Fraction of each pixel covered by ``geom`` (pixel coords), from a 2.5 m rasterisation of its bounding box."""
    minx, miny, maxx, maxy = geom.bounds
    c0, c1 = max(0, math.floor(minx)), min(size, math.ceil(maxx))
    r0, r1 = max(0, math.floor(miny)), min(size, math.ceil(maxy))
    if c1 <= c0 or r1 <= r0:
        return None
    transform = Affine(1.0 / SUPER, 0.0, c0, 0.0, 1.0 / SUPER, r0)
    fine = features.rasterize([(geom, 1)], out_shape=((r1 - r0) * SUPER, (c1 - c0) * SUPER), transform=transform,
                              fill=0, dtype="uint8")
    frac = fine.reshape(r1 - r0, SUPER, c1 - c0, SUPER).mean(axis=(1, 3)).astype(np.float32)
    return slice(r0, r1), slice(c0, c1), frac


def shape_coverage(shape: Shape, row: float, col: float, heading: float, radius_m: float,
                   size: int) -> tuple[slice, slice, np.ndarray] | None:
    """Fraction of each pixel inside an analytic plan form, from 0.5 m samples (20 x 20 per pixel)."""
    rad = radius_m / PX + 1.0
    r0, r1 = max(0, math.floor(row - rad)), min(size, math.ceil(row + rad))
    c0, c1 = max(0, math.floor(col - rad)), min(size, math.ceil(col + rad))
    if c1 <= c0 or r1 <= r0:
        return None
    rr = r0 + (np.arange((r1 - r0) * FINE) + 0.5) / FINE
    cc = c0 + (np.arange((c1 - c0) * FINE) + 0.5) / FINE
    east, north = (cc - col)[None, :] * PX, -(rr - row)[:, None] * PX
    th = math.radians(heading)
    u = east * math.sin(th) + north * math.cos(th)
    v = east * math.cos(th) - north * math.sin(th)
    mask = shape(u, v)
    frac = mask.reshape(r1 - r0, FINE, c1 - c0, FINE).mean(axis=(1, 3)).astype(np.float32)
    return slice(r0, r1), slice(c0, c1), frac


def blend(img: np.ndarray, win, spec: np.ndarray, texture: np.ndarray | None = None, amp: float = 0.0) -> None:
    """Mix a paint into the pixels a coverage window touches, in proportion to the covered fraction."""
    if win is None:
        return
    rs, cs, frac = win
    paint = spec[:, None, None]
    if texture is not None and amp:
        paint = paint * (1.0 + amp * texture[rs, cs][None])
    img[:, rs, cs] = img[:, rs, cs] * (1.0 - frac[None]) + paint * frac[None]


def stamp_max(canvas: np.ndarray, win) -> None:
    """Accumulate a shadow footprint (overlapping shadows do not darken twice)."""
    if win is not None:
        rs, cs, frac = win
        canvas[rs, cs] = np.maximum(canvas[rs, cs], frac)


# ----------------------------------------------------------------------------------------------- plan forms
def trapezoid_wing(u, v, root_le: float, root_chord: float, tip_chord: float, half_span: float, sweep_deg: float):
    """A swept trapezoid pair: leading edge moves aft with |v| at tan(sweep); chord tapers linearly to the tip."""
    av = np.abs(v)
    le = root_le - math.tan(math.radians(sweep_deg)) * av
    chord = root_chord + (tip_chord - root_chord) * av / half_span
    return (av <= half_span) & (u <= le) & (u >= le - chord)


def fuselage(u, v, length: float, width: float, centre: float = 0.0, power: float = 2.6):
    """A super-ellipse: blunter than an ellipse, the way a fuselage is a cylinder with rounded ends."""
    return np.abs((u - centre) / (length / 2)) ** power + np.abs(v / (width / 2)) ** 2 <= 1.0


PLANFORMS: dict[str, dict[str, tuple[float, float]]] = {
    # fuselage width, wing root chord (x length), taper, sweep (deg), wing root leading edge (x length ahead of centre),
    # tailplane span (x wingspan), tailplane root chord (x length)
    "jet": {"fw": (0.085, 0.11), "rc": (0.15, 0.21), "taper": (0.25, 0.4), "sweep": (22, 35), "le": (0.05, 0.16),
            "tail_span": (0.3, 0.42), "tail_chord": (0.11, 0.15)},
    "fighter": {"fw": (0.09, 0.12), "rc": (0.33, 0.45), "taper": (0.15, 0.3), "sweep": (35, 52), "le": (0.05, 0.15),
                "tail_span": (0.45, 0.6), "tail_chord": (0.12, 0.17)},
    "turboprop": {"fw": (0.09, 0.12), "rc": (0.11, 0.14), "taper": (0.4, 0.6), "sweep": (0, 6), "le": (0.1, 0.18),
                  "tail_span": (0.3, 0.4), "tail_chord": (0.1, 0.14)},
}


def aircraft_shape(t: AircraftType, rng: np.random.Generator, scale: float) -> Shape:
    """An analytic plan form for a type, with proportions drawn around typical values of its kind."""
    L, S = t.length_m * scale, t.width_m * scale
    if t.kind == "heli":
        return _heli_body(L, rng)
    p = {k: rng.uniform(*v) for k, v in PLANFORMS[t.kind].items()}
    fw, rc, le = p["fw"] * L, p["rc"] * L, p["le"] * L
    tail_span, tail_chord = p["tail_span"] * S, p["tail_chord"] * L
    tail_le, tail_sweep = -L * rng.uniform(0.3, 0.36), rng.uniform(28, 42)
    pods = _engine_pods(t.engines if t.kind == "jet" else 0, S, L, le, p["sweep"])

    def shape(u, v):
        m = fuselage(u, v, L, fw)
        m |= trapezoid_wing(u, v, le, rc, rc * p["taper"], S / 2, p["sweep"])
        m |= trapezoid_wing(u, v, tail_le, tail_chord, tail_chord * 0.45, tail_span / 2, tail_sweep)
        for pu, pv, pl, pw in pods:
            m |= fuselage(u, v - pv, pl, pw, centre=pu, power=2.0)
        return m

    return shape


def _engine_pods(n: int, span: float, length: float, le: float, sweep: float) -> list[tuple[float, ...]]:
    """Under-wing engine pods (u centre, v centre, length, width) ahead of the leading edge."""
    stations = {2: (0.34,), 4: (0.27, 0.5)}.get(n, ())
    pods = []
    for frac in stations:
        v = frac * span / 2
        u = le - math.tan(math.radians(sweep)) * v + 0.02 * length
        for side in (-1, 1):
            pods.append((u, side * v, 0.09 * length, 0.045 * length))
    return pods


def _heli_body(L: float, rng: np.random.Generator) -> Shape:
    """Cabin and tail boom; the rotor is a separate dark sprite."""
    cabin_len, cabin_w = L * rng.uniform(0.55, 0.65), L * rng.uniform(0.12, 0.16)

    def shape(u, v):
        m = fuselage(u, v, cabin_len, cabin_w, centre=L / 2 - cabin_len / 2)
        m |= (u <= 0.0) & (u >= -L / 2) & (np.abs(v) <= 0.03 * L + 0.25)
        return m

    return shape


def rotor_shape(blades: int, radius: float, phase_deg: float, hub_u: float) -> Shape:
    """Stationary rotor blades: thin (0.55 m) rectangles from the hub."""
    angles = [math.radians(phase_deg + k * 360.0 / blades) for k in range(blades)]

    def shape(u, v):
        m = np.zeros(np.broadcast_shapes(u.shape, v.shape), bool)
        du = u - hub_u
        for a in angles:
            along = du * math.cos(a) + v * math.sin(a)
            across = -du * math.sin(a) + v * math.cos(a)
            m |= (along >= 0) & (along <= radius) & (np.abs(across) <= 0.275)
        return m

    return shape


def rect_shape(length: float, width: float) -> Shape:
    """A rectangle plan form (trucks, cars, buildings)."""
    return lambda u, v: (np.abs(u) <= length / 2) & (np.abs(v) <= width / 2)


# ----------------------------------------------------------------------------------------------- the scene builder
class Builder:
    """Draws one scene: surfaces first (rasterised polygons), then sprites and movers, then optics and atmosphere."""

    def __init__(self, seed: int, size: int):
        self.seed, self.size = seed, size
        self.rng = np.random.default_rng(seed)
        self.img = np.zeros((4, size, size), np.float32)
        self.texture = fractal_noise(self.rng, size, (1.0, 3.0), 0.0)
        self.sprites: list[Sprite] = []
        self.movers: list[Mover] = []
        self.occupied: list[BaseGeometry] = []  # footprints that later objects must not overlap (pixel coords)
        self.roads: list[LineString] = []
        self.aprons: list[tuple[Polygon, float, float, float]] = []  # polygon, centre col, row, heading of its rows
        self.meta: dict = {"seed": seed, "size": size}
        self.road_widths: list[float] = []
        self.sun_elev, self.sun_az = 45.0, 180.0  # drawn in plan()
        self.shadow_keep = np.full(4, 0.4)

    # -------------------------------------------------------------- surfaces
    def surface(self, geom: BaseGeometry, spec: np.ndarray, amp: float = 0.04) -> None:
        blend(self.img, poly_coverage(geom, self.size), spec, self.texture, amp)

    def land_cover(self) -> None:
        """Two or three cover types mixed by a large-scale noise field, each with its own texture strength."""
        rng, n = self.rng, self.size
        biome = str(rng.choice(["arid", "farmland", "mixed"]))
        covers = {"arid": ["desert", "scrub"], "farmland": ["bare_field", "scrub", "stubble"],
                  "mixed": ["desert", "scrub", "bare_field"]}[biome]
        self.meta["biome"] = biome
        beta = rng.uniform(0.3, 1.1)
        field_ = fractal_noise(rng, n, (6.0, 20.0, 60.0), beta)
        cuts = np.sort(rng.uniform(-0.8, 0.8, len(covers) - 1))
        weights = []
        for k in range(len(covers)):
            lo = -np.inf if k == 0 else cuts[k - 1]
            hi = np.inf if k == len(covers) - 1 else cuts[k]
            weights.append(1 / (1 + np.exp(-(field_ - lo) / 0.08)) * (1 / (1 + np.exp((field_ - hi) / 0.08))))
        weights = np.array(weights)
        weights /= weights.sum(axis=0, keepdims=True)
        texture = fractal_noise(rng, n, (0.7, 2.0, 8.0, 30.0), rng.uniform(0.0, 0.8))
        for k, cover in enumerate(covers):
            spec = draw_spectrum(rng, cover)
            amp = rng.uniform(0.03, 0.14)
            self.img += weights[k][None] * spec[:, None, None] * (1 + amp * texture[None])
        if biome != "arid" or rng.uniform() < 0.3:
            self.fields()
        if rng.uniform() < 0.15:
            self.water()

    def fields(self) -> None:
        """Rectangular parcels on a common grid angle, and sometimes centre pivots."""
        rng, n = self.rng, self.size
        angle = rng.uniform(0, 90)
        for _ in range(int(rng.integers(4, 25))):
            c, r = rng.uniform(0, n, 2)
            poly = rect_px(c, r, angle, rng.uniform(150, 700), rng.uniform(100, 500))
            self.surface(poly, draw_spectrum(rng, str(rng.choice(["irrigated", "bare_field", "stubble"]))),
                         rng.uniform(0.02, 0.08))
        pivots = int(rng.integers(1, 4)) if rng.uniform() < 0.4 else 0
        for _ in range(pivots):
            c, r = rng.uniform(0, n, 2)
            self.surface(Point(c, r).buffer(rng.uniform(15, 40), 64), draw_spectrum(rng, "irrigated"), 0.05)

    def water(self) -> None:
        """A sea or lake along one side, with a wavy shore."""
        rng, n = self.rng, self.size
        depth = rng.uniform(0.08, 0.22) * n
        xs = np.linspace(-5, n + 5, 80)
        shore = depth + 6 * np.sin(xs / rng.uniform(15, 40) + rng.uniform(0, 6)) + 3 * rng.standard_normal(80)
        poly = Polygon([(x, y) for x, y in zip(xs, shore, strict=True)] + [(n + 5, -5), (-5, -5)])
        k = int(rng.integers(0, 4))
        poly = Polygon([_rot90(p, k, n) for p in poly.exterior.coords])
        self.surface(poly, draw_spectrum(rng, "water"), 0.02)
        self.occupied.append(poly)

    # -------------------------------------------------------------- airfield
    def airfield(self) -> None:
        """Runway, parallel taxiway with links, aprons on the far side, hangars behind them."""
        rng, n = self.rng, self.size
        hd = rng.uniform(0, 180)
        oc, orow = n / 2 + rng.uniform(-0.15, 0.15) * n, n / 2 + rng.uniform(-0.15, 0.15) * n
        side = float(rng.choice([-1.0, 1.0]))
        rw_len, rw_w = rng.uniform(2000, 3600), rng.uniform(45, 60)
        twy_off = side * rng.uniform(150, 260)
        runway = rect_px(oc, orow, hd, rw_len, rw_w)
        tc, tr = to_px(oc, orow, hd, 0, twy_off)
        taxiway = rect_px(tc, tr, hd, rw_len * 0.9, 23)
        rw_surface = str(rng.choice(["asphalt", "concrete"]))
        self.surface(runway, draw_spectrum(rng, rw_surface), 0.03)
        twy_spec = draw_spectrum(rng, str(rng.choice(["asphalt", "concrete"])))
        self.surface(taxiway, twy_spec, 0.03)
        for k in range(int(rng.integers(2, 5))):
            u = (k / 3 - 0.5) * rw_len * 0.8
            lc, lr = to_px(oc, orow, hd, u, twy_off / 2)
            self.surface(rect_px(lc, lr, hd + 90, abs(twy_off), 20), twy_spec, 0.03)
        self.occupied += [runway.buffer(2), taxiway.buffer(1)]
        self.meta["airfield"] = {"runway_heading_deg": round(hd, 1), "runway_surface": rw_surface}
        u = rng.uniform(-0.35, -0.1) * min(rw_len, n * PX)
        for _ in range(int(rng.integers(1, 4))):
            length, depth = rng.uniform(250, 750), rng.uniform(120, 300)
            ac, ar = to_px(oc, orow, hd, u + length / 2, twy_off + side * (11.5 + depth / 2))
            apron = rect_px(ac, ar, hd, length, depth)
            self.surface(apron, draw_spectrum(rng, str(rng.choice(["concrete", "concrete", "asphalt"]))), 0.03)
            self.aprons.append((apron, ac, ar, hd))
            self.occupied.append(apron)
            hc, hr = to_px(oc, orow, hd, u + length / 2, twy_off + side * (depth + 60))
            self.hangars(hc, hr, hd, length)
            u += length + rng.uniform(40, 300)

    def hangars(self, oc: float, orow: float, hd: float, row_len: float) -> None:
        """Big bright or dark roofs in a row behind an apron: aircraft-sized distractors."""
        rng = self.rng
        for k in range(int(rng.integers(1, 5))):
            u = (k + 0.5) / 4 * row_len - row_len / 2 + rng.uniform(-20, 20)
            c, r = to_px(oc, orow, hd, u, rng.uniform(-15, 15))
            roof = str(rng.choice(["roof_metal", "roof_metal", "roof_dark", "concrete"]))
            self.building(c, r, hd + rng.uniform(-3, 3), rng.uniform(35, 85), rng.uniform(30, 70), roof,
                          rng.uniform(8, 18))

    def building(self, c: float, r: float, hd: float, length: float, width: float, roof: str, height: float) -> bool:
        """A roofed rectangle with a shadow, unless it would overlap something already placed."""
        poly = rect_px(c, r, hd, length, width)
        if any(poly.intersects(o) for o in self.occupied):
            return False
        self.occupied.append(poly)
        self.sprites.append(Sprite(rect_shape(length, width), r, c, hd, math.hypot(length, width) / 2,
                                   draw_spectrum(self.rng, roof), height))
        return True

    # -------------------------------------------------------------- aircraft
    def aircraft(self) -> None:
        """Large aircraft mostly in apron rows, small aircraft and helicopters scattered on aprons and hardstands."""
        rng = self.rng
        large = [t for t in AIRCRAFT if t.cls == "large_aircraft"]
        small = [t for t in AIRCRAFT if t.cls != "large_aircraft"]
        n_large = 0 if rng.uniform() < 0.12 else int(rng.integers(1, 9))
        for _ in range(n_large):
            self.place_aircraft(large[int(rng.integers(len(large)))])
        for _ in range(int(rng.integers(0, 9))):
            self.place_aircraft(small[int(rng.integers(len(small)))])

    def place_aircraft(self, t: AircraftType) -> None:
        rng, n = self.rng, self.size
        radius = max(t.length_m, t.width_m) / 2 * 1.05
        for _ in range(30):
            if self.aprons and rng.uniform() < 0.85:
                apron, ac, ar, hd = self.aprons[int(rng.integers(len(self.aprons)))]
                minx, miny, maxx, maxy = apron.bounds
                c, r = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
                inside = apron.buffer(-(radius / PX + 1.0)).contains(Point(c, r))
                heading = (hd + 90 + rng.normal(0, 4)) % 360 if rng.uniform() < 0.55 else rng.uniform(0, 360)
                on_apron = True
            else:
                c, r = rng.uniform(0.1 * n, 0.9 * n, 2)
                inside, heading, on_apron = True, rng.uniform(0, 360), False
            margin = radius / PX + 2
            if not (margin < c < n - margin and margin < r < n - margin):
                continue
            disc = Point(c, r).buffer(radius / PX + 0.5)
            if not inside or any(disc.intersects(o) for o in self.occupied if not _is_apron(o, self.aprons)):
                continue
            if any(disc.intersects(Point(s.col, s.row).buffer(s.radius_m / PX)) for s in self.sprites):
                continue
            if not on_apron:  # a hardstand: a pad of concrete with room around the aircraft
                pad = Point(c, r).buffer(radius / PX + 3.5, 32)
                if any(pad.intersects(o) for o in self.occupied):
                    continue
                self.surface(pad, draw_spectrum(rng, "concrete"), 0.03)
                self.occupied.append(pad)
            self.add_aircraft(t, r, c, heading)
            return

    def add_aircraft(self, t: AircraftType, row: float, col: float, heading: float) -> None:
        rng = self.rng
        scale = rng.uniform(0.97, 1.03)
        paint = str(rng.choice(["white", "grey", "dark"], p=t.paints))
        spec, tone = self.contrasting(draw_spectrum(rng, f"{paint}_paint"), row, col, t.length_m * scale / 2)
        truth = {"cls": t.cls, "type": t.name, "length_m": round(t.length_m * scale, 2),
                 "width_m": round(t.width_m * scale, 2), "heading_deg": round(heading % 360, 2), "moving": False,
                 "speed_mps": 0.0}
        shape = aircraft_shape(t, rng, scale)
        radius = max(t.length_m, t.width_m) * scale / 2 * 1.05
        height = (0.12 if t.kind != "heli" else 0.2) * t.length_m
        extra = {"paint": paint, "tone": tone}
        self.sprites.append(Sprite(shape, row, col, heading, radius, spec, height, truth, extra))
        if t.kind == "heli":
            rotor = rotor_shape(t.blades, t.width_m * scale / 2, rng.uniform(0, 360), 0.12 * t.length_m)
            self.sprites.append(Sprite(rotor, row, col, heading, radius * 1.3, draw_spectrum(rng, "rotor"),
                                       height * 1.1))

    def contrasting(self, spec: np.ndarray, row: float, col: float, radius_m: float,
                    min_diff: float = 0.08) -> tuple[np.ndarray, str]:
        """Push a paint away from the local visible brightness so every truth aircraft is visible in principle.

        Returns the paint and its tone against the ground ("brighter" or "darker"), which the tests check.
        """
        rad = max(2, int(radius_m / PX) + 2)
        r, c = int(row), int(col)
        patch = self.img[:3, max(0, r - rad):r + rad + 1, max(0, c - rad):c + rad + 1]
        bg = float(np.median(patch.mean(axis=0)))
        diff = float(spec[:3].mean()) - bg
        if abs(diff) >= min_diff:
            return spec, "brighter" if diff > 0 else "darker"
        if diff >= 0 or bg - min_diff < 0.03:
            return (spec + np.float32(min_diff - diff)).astype(np.float32), "brighter"
        return np.maximum(spec - np.float32(min_diff + diff), 0.01).astype(np.float32), "darker"

    # -------------------------------------------------------------- roads, lots, towns
    def road_network(self) -> None:
        """Straight and gently curved roads crossing the scene; the first passes near the airfield if there is one."""
        rng, n = self.rng, self.size
        for k in range(int(rng.integers(1, 4))):
            angle = rng.uniform(0, 180)
            oc, orow = rng.uniform(0.2 * n, 0.8 * n, 2)
            if k == 0 and self.aprons:
                _, ac, ar, _ = self.aprons[0]
                oc, orow = ac + rng.uniform(-40, 40), ar + rng.uniform(-40, 40)
            t = np.arange(-1.5 * n, 1.5 * n, 2.0)
            th = math.radians(angle)
            amp = rng.uniform(8, 30) if rng.uniform() < 0.5 else 0.0
            wave = amp * np.sin(2 * np.pi * t / rng.uniform(250, 600) + rng.uniform(0, 6.3))
            cols = oc + t * math.sin(th) + wave * math.cos(th)
            rows = orow - t * math.cos(th) + wave * math.sin(th)
            line = LineString(np.column_stack([cols, rows]))
            width = rng.uniform(7, 15)
            self.surface(line.buffer(width / 2 / PX, cap_style=2), draw_spectrum(rng, "asphalt"), 0.02)
            self.roads.append(line)
            self.meta.setdefault("roads", []).append({"curved": bool(amp), "width_m": round(width, 1)})
            self.occupied.append(line.buffer(width / 2 / PX + 0.5))
            self.road_widths.append(width)

    def lots(self) -> None:
        """Vehicle parks with rows of parked trucks (truth, not moving) and car parks full of sub-pixel cars."""
        rng, n = self.rng, self.size
        for _ in range(int(rng.integers(0, 4))):
            length, depth, hd = rng.uniform(80, 250), rng.uniform(50, 150), rng.uniform(0, 180)
            c, r = rng.uniform(0.1 * n, 0.9 * n, 2)
            lot = rect_px(c, r, hd, length, depth)
            if any(lot.intersects(o) for o in self.occupied):
                continue
            self.occupied.append(lot)
            self.surface(lot, draw_spectrum(rng, str(rng.choice(["gravel", "concrete", "asphalt"]))), 0.04)
            self.fill_lot(c, r, hd, length, depth, trucks=rng.uniform() < 0.6)

    def fill_lot(self, c: float, r: float, hd: float, length: float, depth: float, trucks: bool) -> None:
        rng = self.rng
        veh_len = rng.uniform(8, 20) if trucks else 4.5
        veh_w, gap = (2.5, rng.uniform(1.5, 4)) if trucks else (1.8, rng.uniform(0.8, 1.5))
        rows = max(1, int(depth // (veh_len + 8)))
        per_row = int((length - 4) // (veh_w + gap))
        fill = rng.uniform(0.3, 0.95)
        for i in range(rows):
            v_row = -depth / 2 + (i + 0.5) * depth / rows
            for j in range(per_row):
                if rng.uniform() > fill:
                    continue
                u = -length / 2 + 2 + (j + 0.5) * (veh_w + gap)
                pc, pr = to_px(c, r, hd, u, v_row)
                vh = (hd + 90 + (180 if rng.uniform() < 0.5 else 0)) % 360
                if trucks:
                    truth = {"cls": "vehicle", "type": "truck", "length_m": round(veh_len, 2), "width_m": veh_w,
                             "heading_deg": round(vh, 2), "moving": False, "speed_mps": 0.0}
                    self.sprites.append(Sprite(rect_shape(veh_len, veh_w), pr, pc, vh, veh_len / 2 + 1,
                                               draw_spectrum(rng, "truck"), 3.5, truth, {"parked_in": "lot"}))
                else:
                    spec = draw_spectrum(rng, str(rng.choice(CAR_SPECTRA)))
                    self.sprites.append(Sprite(rect_shape(4.5, 1.8), pr, pc, vh, 3.0, spec, 1.5))

    def town(self) -> None:
        """A cluster of buildings on a local grid: bright, dark and tiled roofs."""
        rng, n = self.rng, self.size
        oc, orow = rng.uniform(0.1 * n, 0.9 * n, 2)
        hd = rng.uniform(0, 90)
        for _ in range(int(rng.integers(8, 40))):
            u, v = rng.normal(0, 250, 2)
            c, r = to_px(oc, orow, hd, u, v)
            if not (2 < c < n - 2 and 2 < r < n - 2):
                continue
            roof = str(rng.choice(["roof_metal", "roof_dark", "roof_tile", "concrete"], p=[0.3, 0.2, 0.3, 0.2]))
            self.building(c, r, hd + rng.normal(0, 2), rng.uniform(10, 60), rng.uniform(8, 35), roof,
                          rng.uniform(3, 15))

    # -------------------------------------------------------------- traffic
    def traffic(self) -> None:
        """Moving trucks (singles and convoys) and moving cars on the roads."""
        rng = self.rng
        for _ in range(int(rng.integers(0, 7))):
            convoy = rng.uniform() < 0.4
            count = int(rng.integers(3, 9)) if convoy else 1
            self.truck_group(count)
        for _ in range(int(rng.integers(0, 25))):
            road, k = self.pick_road()
            direction = int(rng.choice([-1, 1]))
            spec = draw_spectrum(rng, str(rng.choice(CAR_SPECTRA)))
            self.movers.append(Mover(road, rng.uniform(0, road.length), direction, rng.uniform(10, 35),
                                     self.road_widths[k] / 4, 4.5, 1.8, spec, 1.5, False))

    def pick_road(self) -> tuple[LineString, int]:
        k = int(self.rng.integers(len(self.roads)))
        return self.roads[k], k

    def truck_group(self, count: int) -> None:
        """One truck or a convoy at a common speed and spacing, entirely inside the scene."""
        rng, n = self.rng, self.size
        road, k = self.pick_road()
        direction, speed = int(rng.choice([-1, 1])), rng.uniform(15, 30)
        spacing = rng.uniform(30, 80) + 20
        lane = self.road_widths[k] / 4
        for _ in range(20):
            s0 = rng.uniform(0, road.length)
            group = []
            for i in range(count):
                length = rng.uniform(12, 20)
                s = s0 - direction * i * spacing / PX
                mover = Mover(road, s, direction, speed, lane, length, 2.5, draw_spectrum(rng, "truck"), 3.5, True,
                              {"convoy": count if count > 1 else 0})
                group.append(mover)
            poses = [m.pose(t) for m in group for t in (BAND_TIME_S.min(), BAND_TIME_S.max())]
            if all(6 < r < n - 6 and 6 < c < n - 6 for r, c, _ in poses) and not self.crowded(poses):
                self.movers += group
                return

    def crowded(self, poses) -> bool:
        """Keep convoys of different groups apart (25 m) so every truck has its own rainbow."""
        for m in self.movers:
            if not m.truth:
                continue
            r, c, _ = m.pose(MID_TIME_S)
            if any(math.hypot(r - pr, c - pc) < 2.5 + 2 for pr, pc, _ in poses):
                return True
        return False

    # -------------------------------------------------------------- drawing objects
    def draw_static(self) -> None:
        """Sun shadows of every sprite first, then the sprites themselves."""
        shadow = np.zeros((self.size, self.size), np.float32)
        for s in self.sprites:
            dr, dc = self.shadow_offset(s.height_m)
            stamp_max(shadow, shape_coverage(s.shape, s.row + dr, s.col + dc, s.heading, s.radius_m, self.size))
        self.img *= 1.0 - (1.0 - self.shadow_keep[:, None, None]) * shadow[None]
        for s in self.sprites:
            blend(self.img, shape_coverage(s.shape, s.row, s.col, s.heading, s.radius_m, self.size), s.spec)

    def shadow_offset(self, height_m: float) -> tuple[float, float]:
        """Shadow displacement (rows, cols) away from the sun for an object of this height."""
        length = height_m / math.tan(math.radians(self.sun_elev)) / PX
        az = math.radians(self.sun_az)
        return length * math.cos(az), -length * math.sin(az)

    def draw_moving(self, band: int) -> np.ndarray:
        """The static image plus every mover at this band's instant (shadow, then body)."""
        img = self.img[band:band + 1].copy()
        t = float(BAND_TIME_S[band])
        shadow = np.zeros((self.size, self.size), np.float32)
        poses = [m.pose(t) for m in self.movers]
        for m, (r, c, h) in zip(self.movers, poses, strict=True):
            dr, dc = self.shadow_offset(m.height_m)
            stamp_max(shadow, shape_coverage(rect_shape(m.length_m, m.width_m), r + dr, c + dc, h, m.length_m / 2 + 1,
                                             self.size))
        img *= 1.0 - (1.0 - self.shadow_keep[band]) * shadow[None]
        for m, (r, c, h) in zip(self.movers, poses, strict=True):
            win = shape_coverage(rect_shape(m.length_m, m.width_m), r, c, h, m.length_m / 2 + 1, self.size)
            blend(img, win, m.spec[band:band + 1])
        return img[0]

    # -------------------------------------------------------------- optics and atmosphere
    def psf(self) -> list[np.ndarray]:
        """Per-band PSF kernels: Airy-like or Gaussian, 0.8-1.6 px FWHM, slightly anisotropic, per-band jitter."""
        rng = self.rng
        kind = str(rng.choice(["airy", "gauss"]))
        fwhm = rng.uniform(0.8, 1.6)
        aspect = rng.uniform(0.85, 1.15)
        self.meta["psf"] = {"kind": kind, "fwhm_px": round(fwhm, 3), "row_col_aspect": round(aspect, 3)}
        return [psf_kernel(kind, fwhm * rng.uniform(0.92, 1.08), aspect) for _ in range(4)]

    def clouds(self, bands: np.ndarray) -> np.ndarray:
        """Thresholded-noise clouds with a band parallax and a ground shadow; returns the valid mask.

        The noise is periodic (filtered with wrap-around), so shifted copies (parallax, shadow) stay seamless.
        """
        rng, n = self.rng, self.size
        valid = np.ones((n, n), bool)
        if rng.uniform() < 0.45:
            self.meta["cloud"] = None
            return valid
        cover = rng.uniform(0.03, 0.4)
        field_ = fractal_noise(rng, n, (6.0, 18.0, 48.0), rng.uniform(0.5, 1.2))
        thr = np.quantile(field_, 1 - cover)
        alpha = np.clip((field_ - thr) / rng.uniform(0.3, 0.9), 0, 1) ** 0.8
        spec = draw_spectrum(rng, "cloud")
        drift = rng.uniform(0.5, 3.0)  # px of parallax between B02 and B04
        direction = math.radians(rng.normal(0, 12))
        shade_len = rng.uniform(20, 250)
        az = math.radians(self.sun_az)
        shade = ndimage.shift(alpha, (shade_len * math.cos(az), -shade_len * math.sin(az)), order=1, mode="grid-wrap")
        bands *= 1.0 - 0.55 * shade[None]
        worst = np.zeros_like(alpha)
        for b in range(4):
            frac = BAND_TIME_S[b] / BAND_TIME_S.max() * drift
            shift = (-frac * math.cos(direction), frac * math.sin(direction))
            a = ndimage.shift(alpha, shift, order=1, mode="grid-wrap")
            bands[b] = bands[b] * (1 - a) + spec[b] * (0.9 + 0.2 * field_.clip(-1, 1)) * a
            worst = np.maximum(worst, a)
        valid = (worst < 0.15) & (shade < 0.25)
        self.meta["cloud"] = {"cover": round(cover, 3), "parallax_px": round(drift, 2),
                              "invalid_fraction": round(float(1 - valid.mean()), 3)}
        return valid

    def radiometry(self, bands: np.ndarray) -> np.ndarray:
        """Haze (per-band gain and Rayleigh-like offset), faint column striping, sensor noise."""
        rng, n = self.rng, self.size
        gain = rng.uniform(0.9, 1.1, 4)
        haze = rng.uniform(0.0, 0.035)
        offset = haze * RAYLEIGH + rng.uniform(-0.004, 0.004, 4)
        noise = rng.uniform(0.001, 0.004, 4)
        stripes = rng.uniform() < 0.3
        out = bands * gain[:, None, None] + offset[:, None, None]
        if stripes:
            out *= 1.0 + rng.normal(0, 0.002, (4, 1, n))
        out += rng.standard_normal(out.shape) * noise[:, None, None]
        self.meta["radiometry"] = {"gain": np.round(gain, 3).tolist(), "haze_offset_b02": round(float(offset[0]), 4),
                                   "noise": np.round(noise, 4).tolist(), "striping": bool(stripes)}
        return np.clip(out, 0.0, 1.5).astype(np.float32)

    # -------------------------------------------------------------- all together
    def plan(self) -> None:
        """Every layout choice: sun, land cover, airfield, roads, lots, towns, aircraft, traffic (surfaces drawn)."""
        rng = self.rng
        self.sun_elev, self.sun_az = rng.uniform(25, 70), rng.uniform(100, 250)
        self.shadow_keep = np.clip(np.array([0.5, 0.42, 0.38, 0.33]) + rng.uniform(-0.08, 0.08), 0.15, 0.8)
        self.meta["sun"] = {"elevation_deg": round(self.sun_elev, 1), "azimuth_deg": round(self.sun_az, 1)}
        self.land_cover()
        if rng.uniform() < 0.75:
            self.airfield()
        self.road_network()
        self.lots()
        for _ in range(int(rng.integers(0, 3))):
            self.town()
        if self.aprons:
            self.aircraft()
        self.traffic()

    def draw(self) -> tuple[np.ndarray, np.ndarray]:
        """Objects, optics, clouds and radiometry; returns (bands, valid).

        Kept apart from ``plan`` so a test can remove one object between the two and see only that object change.
        """
        self.draw_static()
        kernels = self.psf()
        bands = np.stack([ndimage.convolve(self.draw_moving(b), kernels[b], mode="reflect") for b in range(4)])
        valid = self.clouds(bands)
        return self.radiometry(bands), valid

    def build(self) -> tuple[np.ndarray, np.ndarray]:
        self.plan()
        return self.draw()


def psf_kernel(kind: str, fwhm_px: float, aspect: float, radius: int = 4) -> np.ndarray:
    """A normalised kernel averaged over 5 x 5 sub-positions per pixel; rows scaled by ``aspect``."""
    sub = (np.arange(5) + 0.5) / 5 - 0.5
    ax = (np.arange(-radius, radius + 1)[:, None] + sub[None, :]).ravel()
    y, x = np.meshgrid(ax * aspect, ax, indexing="ij")
    r = np.hypot(x, y)
    if kind == "airy":
        z = 2 * 1.6163 * r / fwhm_px  # the Airy pattern (2 J1(z) / z)^2 is at half maximum for z = 1.6163
        with np.errstate(invalid="ignore", divide="ignore"):
            k = np.where(z < 1e-6, 1.0, (2 * special.j1(z) / z) ** 2)
    else:
        sigma = fwhm_px / 2.3548
        k = np.exp(-0.5 * (r / sigma) ** 2)
    side = 2 * radius + 1
    k = k.reshape(side, 5, side, 5).mean(axis=(1, 3))
    return (k / k.sum()).astype(np.float32)


def _rot90(p: tuple[float, float], k: int, n: int) -> tuple[float, float]:
    x, y = p
    for _ in range(k):
        x, y = n - y, x
    return x, y


def _is_apron(geom: BaseGeometry, aprons) -> bool:
    return any(geom is a[0] for a in aprons)


# ----------------------------------------------------------------------------------------------- georeference, truth
def georeference(rng: np.random.Generator, size: int) -> tuple[str, Affine]:
    """A UTM zone and origin where such bases are (Syria/Lebanon in 36N/37N, Libya in 34N), snapped to 10 m."""
    epsg, (x_lo, x_hi), (y_lo, y_hi) = [
        (32636, (260_000, 740_000), (3_550_000, 4_100_000)),
        (32637, (260_000, 740_000), (3_550_000, 4_100_000)),
        (32634, (260_000, 740_000), (3_200_000, 3_600_000)),
    ][int(rng.integers(3))]
    x0 = round(rng.uniform(x_lo, x_hi - size * PX) / PX) * PX
    y0 = round(rng.uniform(y_lo + size * PX, y_hi) / PX) * PX
    return f"EPSG:{epsg}", Affine(PX, 0.0, x0, 0.0, -PX, y0)


def truth_objects(b: Builder, valid: np.ndarray, crs: str, transform: Affine) -> tuple[list[MapObject], list[dict]]:
    """Truth for every object whose centre is inside the scene and valid (not under cloud or cloud shadow)."""
    items: list[tuple[float, float, dict, dict]] = []
    for s in b.sprites:
        if s.truth:
            items.append((s.row, s.col, s.truth, s.extra))
    for m in b.movers:
        if m.truth:
            r, c, h = m.pose(MID_TIME_S)
            props = {"cls": "vehicle", "type": "truck", "length_m": round(m.length_m, 2), "width_m": m.width_m,
                     "heading_deg": round(h, 2), "moving": True, "speed_mps": round(m.speed_mps, 2)}
            items.append((r, c, props, m.extra))
    objects, extras = [], []
    n = b.size
    for r, c, props, extra in items:
        if not (1 <= r < n - 1 and 1 <= c < n - 1) or not valid[int(r), int(c)]:
            continue
        props = dict(props)
        cls = props.pop("cls")
        objects.append(object_at_pixel(transform, crs, r, c, cls, **props))
        extras.append(dict(extra))
    return objects, extras


def render(seed: int, size: int = 384) -> Rendered:
    """Render one scene with its truth, per-object extras and the drawn parameters."""
    b = Builder(seed, size)
    bands, valid = b.build()
    geo_rng = np.random.default_rng([seed, 7])
    crs, transform = georeference(geo_rng, size)
    when = datetime(2024, 3, 1, tzinfo=UTC) + timedelta(days=int(geo_rng.integers(0, 500)),
                                                        minutes=int(geo_rng.integers(490, 535)))
    acq = Acquisition(source=SOURCE, id=f"indep-{seed}", sensor=str(geo_rng.choice(["Sentinel-2A", "Sentinel-2B"])),
                      datetime=when, cloud_cover=round(100.0 * float(1 - valid.mean()), 2), simulated=True)
    scene = Scene(bands=bands, band_names=BAND_NAMES, transform=transform, crs=crs, valid=valid, acquisition=acq,
                  simulated=True)
    truth, extras = truth_objects(b, valid, crs, transform)
    b.meta["crs"] = crs
    return Rendered(scene, truth, extras, b.meta)


def render_independent(seed: int, size: int = 384) -> tuple[Scene, list[MapObject]]:
    """One independently rendered scene and its point truth (see the module docstring for what differs)."""
    r = render(seed, size)
    return r.scene, r.truth


def scene_name(seed: int) -> str:
    return f"indep_{seed:05d}"


def write_rendered(r: Rendered, out: Path, name: str) -> tuple[Path, Path]:
    """Scene GeoTIFF + truth GeoJSON (extras such as paint ride along as properties; metadata at top level)."""
    tif = write_scene(r.scene, out / f"{name}.tif")
    feats = [object_feature(o, **e) for o, e in zip(r.truth, r.extras, strict=True)]
    gj = write_geojson(feature_collection(feats, simulated=True, source=SOURCE, render=r.meta),
                       out / f"{name}.truth.geojson")
    return tif, gj


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render independent evaluation scenes (never for training).")
    parser.add_argument("--n", type=int, default=20, help="number of scenes")
    parser.add_argument("--seed", type=int, default=900, help="seed of the first scene; scene k uses seed + k")
    parser.add_argument("--size", type=int, default=384, help="scene side in pixels (10 m)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from rich.progress import track

    totals: dict[str, int] = {}
    for k in track(range(args.n), description="rendering"):
        seed = args.seed + k
        r = render(seed, args.size)
        write_rendered(r, args.out, scene_name(seed))
        for o in r.truth:
            key = f"{o.cls}{'_moving' if o.moving else ''}"
            totals[key] = totals.get(key, 0) + 1
    log.info("wrote %d scenes to %s; truth objects: %s", args.n, args.out, dict(sorted(totals.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
