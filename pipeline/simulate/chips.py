"""Randomised training chips for the detector, deliberately NOT tied to our AOIs (domain randomisation).

``render_chip(seed, size)`` draws a random landscape (fields, desert, urban, airfield, port, ...), roads, aprons,
clutter (buildings, bright roofs, hangars, tanks, boats, cars), aircraft of every catalogue type with random paint,
parked trucks in lots and moving trucks (alone or in columns) with the band-offset rainbow, then runs the sensor
model (haze, partial clouds + shadows, misregistration, PSF, noise).

Truth convention: ``ChipObject.row/col`` are continuous pixel coordinates with the CENTRE of pixel (0, 0) at
(0.5, 0.5) (pixel (i, j) covers [i, i+1) x [j, j+1)). A moving truck's centre is its position at the middle of its
B02..B04 rainbow (physics.REFERENCE_TIME_S). ``heading_deg``: 0 = up (north), clockwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.simulate import landcover, painters, sensor
from pipeline.simulate.aircraft import CATALOGUE, choose_paint, paint_reflectance
from pipeline.simulate.canvas import Canvas, PaintDelta
from pipeline.simulate.clouds import cloud_layer
from pipeline.simulate.physics import derive_seed, fractal_noise
from pipeline.simulate.vehicles import pick_paint, pick_truck

PAD = 10  # pixels rendered beyond each chip edge so objects and PSF run off the edge naturally
PIXEL = 10.0
STYLES = ("fields", "desert", "urban", "airfield", "airfield", "port", "mixed", "vegetation", "soil", "airfield")


@dataclass(frozen=True)
class ChipObject:
    cls: str
    row: float
    col: float
    type: str
    length_m: float
    width_m: float
    heading_deg: float
    moving: bool
    speed_mps: float
    occluded: bool = False  # centre under cloud / cloud shadow (valid=False there)
    contrast: float = 1.0  # peak change (reflectance, mean of bands) the object and its shadow made to the ground,
    #                        before PSF and noise: ~0 means invisible (e.g. an olive truck on asphalt)


@dataclass
class Chip:
    bands: np.ndarray  # (4, H, W) float32 reflectance B02, B03, B04, B08
    valid: np.ndarray  # (H, W) bool
    objects: list[ChipObject] = field(default_factory=list)


@dataclass(frozen=True)
class ChipOptions:
    """Training-time additions to the chip renderer, each a share or probability; all 0 draws the chip as always.

    Why one object: every option travels unchanged from the training config to the layout, so adding one touches
    this class and the code that uses it, not every signature in between."""

    fighter_rows: float = 0.0  # probability of an extra row of fighters/helicopters side by side (hard negatives)
    relative_paint: float = 0.0  # share of aircraft painted relative to their ground (ground_relative_paint)
    bright_aprons: float = 0.0  # share of aprons whose surface is 1.2-1.8 x brighter (new or sun-bleached concrete)
    sand_tracks: float = 0.0  # share of roads left unpaved: the ground's own colour, 0.95-1.2 x (desert tracks)
    slow_convoys: float = 0.0  # share of moving truck groups driving at 6-12 m/s (a one-pixel band offset)
    matched_paint: float = 0.0  # share of aircraft painted flat grey at their ground's brightness, with sun shadows
    roof_tanks: float = 0.0  # share of built-up chips scattered with rooftop water tanks and small blue roofs

    @property
    def layout_options_on(self) -> bool:
        """Whether any option drawing from the layout's options stream is on (fighter rows have their own)."""
        return max(self.relative_paint, self.bright_aprons, self.sand_tracks, self.slow_convoys,
                   self.matched_paint) > 0


# ---------------------------------------------------------------- background


def _parcels(shape, rng, size_px: tuple[float, float], classes: list[str]) -> np.ndarray:
    a, b = size_px
    return landcover.parcels(shape, rng, (a * 0.7, a * 1.4), (b * 0.3, b * 1.2), classes)


def _labels(style: str, shape, rng) -> np.ndarray:
    h, w = shape
    cid = landcover.cover_id
    noise = fractal_noise(shape, rng, beta=3.0)
    if style == "desert":
        lab = np.full(shape, cid("desert"))
        lab[noise > 1.0] = cid(str(rng.choice(["gravel", "soil", "shrub"])))
    elif style == "fields":
        lab = _parcels(shape, rng, (rng.uniform(8, 30), rng.uniform(8, 40)),
                       ["soil", "vegetation", "dry_grass", "red_soil", "vegetation", "shrub"])
    elif style == "vegetation":
        lab = np.full(shape, cid("vegetation"))
        lab[noise > 0.6] = cid("shrub")
        lab[noise < -1.2] = cid("soil")
    elif style == "soil":
        lab = np.full(shape, cid(str(rng.choice(["soil", "red_soil", "dry_grass"]))))
        lab[noise > 0.9] = cid("shrub")
    elif style == "urban":
        lab = np.full(shape, cid("urban"))
        lab[noise > 1.1] = cid("vegetation")
        lab[noise < -1.3] = cid("concrete")
    elif style == "port":
        lab = np.full(shape, cid(str(rng.choice(["urban", "concrete", "gravel"]))))
    elif style == "airfield":
        base = str(rng.choice(["dry_grass", "soil", "desert", "shrub", "vegetation", "red_soil"]))
        lab = np.full(shape, cid(base))
        lab[noise > 0.8] = cid(str(rng.choice(["soil", "shrub", "gravel"])))
    else:  # mixed
        lab = _parcels(shape, rng, (rng.uniform(10, 40), rng.uniform(10, 40)),
                       ["soil", "vegetation", "urban", "dry_grass", "desert", "shrub"])
    if style in ("port", "mixed") or rng.random() < 0.12:
        # a coast: half-plane (or a lake) of water with a wavy edge
        rr, cc = np.mgrid[0:h, 0:w]
        ang = rng.uniform(0, 2 * np.pi)
        d = (rr - h / 2) * np.cos(ang) + (cc - w / 2) * np.sin(ang) + rng.uniform(-0.3, 0.3) * h
        lab[d + 4 * noise > 0] = cid("water")
    return lab


# ---------------------------------------------------------------- layout helpers


@dataclass
class _Layout:
    canvas: Canvas
    rng: np.random.Generator
    labels: np.ndarray
    shadow_dir: float
    sun_elev: float
    roads: list[tuple[np.ndarray, float]] = field(default_factory=list)  # (pts_px, width_m)
    aprons: list[tuple[float, float, float, float, float]] = field(default_factory=list)  # row, col, L, W, heading
    objects: list[ChipObject] = field(default_factory=list)
    occupied: list[tuple[float, float, float]] = field(default_factory=list)  # row, col, radius_px
    options: ChipOptions = field(default_factory=lambda: ChipOptions())
    options_rng: np.random.Generator | None = None  # the options' own stream (set when a layout option is on), so
    # chips rendered with every option at 0 are unchanged
    tanks_rng: np.random.Generator | None = None  # roof tanks' own stream (set when that option is on), so the
    # chips of the other options are unchanged by it

    @property
    def full(self) -> int:
        return self.canvas.shape[0]

    def on_water(self, row: float, col: float) -> bool:
        i, j = int(row), int(col)
        h, w = self.labels.shape
        return 0 <= i < h and 0 <= j < w and self.labels[i, j] == landcover.cover_id("water")

    def free(self, row: float, col: float, radius_px: float) -> bool:
        """No other object within the radius, and dry land (roads may bridge water; vehicles do not stop there)."""
        if self.on_water(row, col):
            return False
        return all(np.hypot(row - r, col - c) > radius_px + rad for r, c, rad in self.occupied)


def _option_drawn(lay: _Layout, share: float) -> bool:
    """Whether an option with this share applies here. It draws from the options' stream only when the option is
    on, so an option at 0 leaves the stream, and the chips made with the other options, as they were before it
    existed. (Relative paint, bright aprons and sand tracks, the first three, draw whenever the stream exists; the
    stages trained with them saw those chips, so they stay that way.)"""
    return share > 0 and lay.options_rng is not None and lay.options_rng.random() < share


BLUE_ROOF = np.array([0.17, 0.11, 0.065, 0.13])
"""Blue plastic water tanks and blue-painted roofs (B02, B03, B04, B08): bright in blue, dark in red."""


def _add_roof_tanks(lay: _Layout, rng: np.random.Generator) -> None:
    """Rooftop water tanks and small blue roofs in a town. Why: on the real Cartagena frame (`benchmarks/realdata.py`)
    the vehicle verifier kept roofs with one blue pixel beside a bright one, which look like a truck's band offset;
    our towns had no blue in them. A hard negative for the verifiers, drawn only in their training chips."""
    n = lay.full
    centres = rng.uniform(0, n, (int(rng.integers(2, 6)), 2))  # blocks where tanks cluster
    for _ in range(int(rng.integers(20, 120))):
        row, col = centres[rng.integers(len(centres))] + rng.normal(0, n / 8, 2)
        if lay.on_water(row, col):
            continue
        k = rng.random()
        if k < 0.7:
            roof = BLUE_ROOF * rng.uniform(0.7, 1.6)
        elif k < 0.9:
            roof = np.array([0.36, 0.37, 0.38, 0.40]) * rng.uniform(0.8, 1.2)  # white tanks
        else:
            roof = np.array([0.05, 0.05, 0.05, 0.06]) * rng.uniform(0.8, 1.5)  # black tanks
        size = rng.uniform(3, 14)
        painters.paint_box(lay.canvas, row, col, size, size * rng.uniform(0.5, 1.0), rng.uniform(0, 180), roof,
                           height_m=rng.uniform(1, 4), shadow_dir_deg=lay.shadow_dir, sun_elev_deg=lay.sun_elev,
                           ss=2)


def _random_road(lay: _Layout) -> np.ndarray:
    n = lay.full
    rng = lay.rng
    ang = rng.uniform(0, np.pi)
    centre = rng.uniform(0.15 * n, 0.85 * n, 2)
    d = np.array([-np.cos(ang), np.sin(ang)])
    ts = np.linspace(-n, n, 9)
    curve = rng.uniform(-0.004, 0.004)
    perp = np.array([d[1], -d[0]])
    return np.array([centre + d * t + perp * curve * t * t for t in ts])


def _add_roads(lay: _Layout, style: str) -> None:
    rng = lay.rng
    n_roads = int(rng.choice([0, 1, 1, 2, 2, 3, 4], p=[0.08, 0.25, 0.2, 0.2, 0.12, 0.1, 0.05]))
    pal = landcover.palette()
    for _ in range(n_roads):
        pts = _random_road(lay)
        width = float(rng.choice([7.0, 9.0, 12.0, 16.0, 22.0, 26.0]))
        surface = str(rng.choice(["asphalt", "asphalt", "asphalt", "concrete", "gravel"]))
        refl = pal[landcover.cover_id(surface)] * rng.uniform(0.8, 1.25)
        if lay.options_rng is not None and lay.options_rng.random() < lay.options.sand_tracks:
            refl = unpaved_track(lay.canvas.bands, pts, lay.options_rng)
        painters.paint_polyline(lay.canvas, pts, width, refl)
        if width >= 16 and rng.random() < 0.5:  # dual carriageway: a darker or greener median
            painters.paint_polyline(lay.canvas, pts, width * 0.12, pal[landcover.cover_id("shrub")], alpha=0.7)
        lay.roads.append((pts, width))


def unpaved_track(bands: np.ndarray, pts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The ground's own colour along a road, a little brighter (compacted sand or earth): a desert track like Al
    Khadim's, where trucks are darker than the ground and their band offset reads the other way round."""
    n = bands.shape[1]
    inside = pts[(pts >= 0).all(axis=1) & (pts < n).all(axis=1)].astype(int)
    ground = bands[:, inside[:, 0], inside[:, 1]] if len(inside) else bands.reshape(bands.shape[0], -1)
    return np.median(ground, axis=1) * rng.uniform(0.95, 1.2)


def _add_aprons(lay: _Layout, style: str) -> None:
    rng = lay.rng
    n = lay.full
    pal = landcover.palette()
    k = int(rng.integers(1, 4)) if style == "airfield" else int(rng.random() < 0.25)
    heading = rng.uniform(0, 180)
    for i in range(k):
        L, W = rng.uniform(200, 1200), rng.uniform(100, 450)
        runway = i == 0 and style == "airfield" and rng.random() < 0.5
        if runway:
            L, W = rng.uniform(1800, 3600), rng.uniform(30, 60)  # a runway strip
        row, col = rng.uniform(0, n, 2)
        surface = "concrete" if rng.random() < 0.7 else "asphalt"
        refl = pal[landcover.cover_id(surface)] * rng.uniform(0.75, 1.3)
        if lay.options_rng is not None and lay.options_rng.random() < lay.options.bright_aprons:
            refl = refl * lay.options_rng.uniform(1.2, 1.8)
        box_heading = heading + float(rng.choice([0, 90])) * (i > 0)
        painters.paint_box(lay.canvas, row, col, L, W, box_heading, refl)
        if runway and rng.random() < 0.8:
            painters.paint_runway_markings(lay.canvas, row, col, box_heading, L, W, rng)
        lay.aprons.append((row, col, L, W, box_heading))
        # concrete slab seams / stains: low-contrast patches
        for _ in range(int(rng.integers(0, 6))):
            painters.paint_box(lay.canvas, row + rng.normal(0, W / 40), col + rng.normal(0, L / 40),
                               rng.uniform(20, 80), rng.uniform(20, 80), heading, refl * rng.uniform(0.85, 1.15),
                               ss=2)


def _add_clutter(lay: _Layout, style: str) -> None:
    rng = lay.rng
    n = lay.full
    c = lay.canvas
    if style == "urban" and rng.random() < 0.7:  # a town: street grid and dense flat roofs
        from shapely.geometry import box

        from pipeline.simulate.site import PixelZone, paint_town

        asphalt = landcover.palette()[landcover.cover_id("asphalt")]
        paint_town(c, PixelZone("town", "built", box(0, 0, n, n)), rng, asphalt, lay.shadow_dir, lay.sun_elev,
                   max_buildings=150)
    n_build = {"urban": 70, "port": 40, "airfield": 12, "mixed": 20}.get(style, 5)
    n_build = int(rng.integers(0, n_build + 1))
    for _ in range(n_build):
        row, col = rng.uniform(0, n, 2)
        kind = rng.random()
        if kind < 0.35:
            roof = np.array([0.30, 0.33, 0.35, 0.38]) * rng.uniform(0.8, 1.5)  # bright metal / white roof
        elif kind < 0.6:
            roof = np.array([0.08, 0.09, 0.17, 0.24]) * rng.uniform(0.8, 1.2)  # tiles
        else:
            roof = np.array([0.12, 0.13, 0.14, 0.17]) * rng.uniform(0.6, 1.6)  # concrete / dark
        L, W = rng.uniform(8, 60), rng.uniform(8, 30)
        painters.paint_box(c, row, col, L, W, rng.uniform(0, 180), roof, height_m=rng.uniform(3, 20),
                           shadow_dir_deg=lay.shadow_dir, sun_elev_deg=lay.sun_elev)
    if style in ("airfield", "port") and rng.random() < 0.6:  # hangars: aircraft-sized bright rectangles
        for _ in range(int(rng.integers(1, 4))):
            row, col = rng.uniform(0, n, 2)
            roof = np.array([0.25, 0.27, 0.28, 0.30]) * rng.uniform(0.6, 1.7)
            painters.paint_box(c, row, col, rng.uniform(30, 90), rng.uniform(25, 70), rng.uniform(0, 180), roof,
                               height_m=rng.uniform(8, 20), shadow_dir_deg=lay.shadow_dir, sun_elev_deg=lay.sun_elev)
            lay.occupied.append((row, col, 5.0))
    if rng.random() < 0.25:  # storage tanks: bright discs
        row, col = rng.uniform(0, n, 2)
        for _ in range(int(rng.integers(1, 6))):
            painters.paint_tank(c, row + rng.normal(0, 4), col + rng.normal(0, 4), rng.uniform(6, 20),
                                np.array([0.38, 0.40, 0.41, 0.43]) * rng.uniform(0.7, 1.2), lay.shadow_dir,
                                lay.sun_elev)
    if lay.tanks_rng is not None and style in ("urban", "port", "mixed") and lay.tanks_rng.random() < \
            lay.options.roof_tanks:
        _add_roof_tanks(lay, lay.tanks_rng)
    for _ in range(int(rng.integers(0, 25))):  # cars: too small to matter, but they are there
        row, col = _on_road(lay) if lay.roads and rng.random() < 0.8 else tuple(rng.uniform(0, n, 2))
        if lay.on_water(row, col):
            continue
        refl = np.array([0.3, 0.3, 0.3, 0.32]) * rng.uniform(0.2, 1.5)
        painters.paint_car(c, row, col, rng.uniform(0, 360), refl, speed_mps=float(rng.uniform(0, 30)))


def _flood_and_boats(lay: _Layout, dry: np.ndarray) -> None:
    """Water covers whatever land features were drawn over it (bridges excepted), then boats go on it."""
    rng = lay.rng
    water = lay.labels == landcover.cover_id("water")
    if not water.any():
        return
    if rng.random() > 0.15:  # most roads stop at the shore; sometimes a bridge/causeway stays
        lay.canvas.bands[:, water] = dry[:, water]
    wr, wc = np.nonzero(water)
    for _ in range(int(rng.integers(0, 8))):
        i = int(rng.integers(len(wr)))
        refl = np.array([0.25, 0.26, 0.26, 0.27]) * rng.uniform(0.5, 1.6)
        painters.paint_boat(lay.canvas, wr[i] + rng.random(), wc[i] + rng.random(), rng.uniform(6, 45),
                            rng.uniform(0, 360), refl, wake=rng.random() < 0.3)


def _on_road(lay: _Layout) -> tuple[float, float]:
    pts, _ = lay.roads[int(lay.rng.integers(len(lay.roads)))]
    i = int(lay.rng.integers(len(pts) - 1))
    t = lay.rng.random()
    p = pts[i] + (pts[i + 1] - pts[i]) * t
    return float(p[0]), float(p[1])


# ---------------------------------------------------------------- truth objects


def _add_aircraft(lay: _Layout, style: str) -> None:
    rng = lay.rng
    n = lay.full
    types = list(CATALOGUE.values())
    class_weight = {"large_aircraft": 2.0, "helicopter": 1.6, "small_aircraft": 1.6}
    weights = np.array([class_weight[t.cls] for t in types])
    weights /= weights.sum()
    count = int(rng.integers(1, 15)) if style == "airfield" else int(rng.choice([0, 0, 1, 1, 2, 3]))
    rows_mode = rng.random() < 0.5 and lay.aprons
    base_heading = rng.uniform(0, 360)
    anchor = None
    for i in range(count):
        t = types[int(rng.choice(len(types), p=weights))]
        scale = float(rng.uniform(0.95, 1.05))
        radius = 0.5 * t.length_m * scale / PIXEL
        if rows_mode:
            if anchor is None:
                ar, ac, L, W, hd = lay.aprons[int(rng.integers(len(lay.aprons)))]
                anchor = (ar + rng.normal(0, 5), ac + rng.normal(0, 5), hd)
            ar, ac, hd = anchor
            step = max(t.span_m, t.length_m) * rng.uniform(1.05, 1.4) / PIXEL
            d = np.deg2rad(hd)
            row, col = ar - np.cos(d) * step * (i - count / 2), ac + np.sin(d) * step * (i - count / 2)
            heading = (hd + 90 + rng.choice([0, 180]) + rng.normal(0, 3)) % 360
        else:
            if lay.aprons and rng.random() < 0.7:
                ar, ac, L, W, hd = lay.aprons[int(rng.integers(len(lay.aprons)))]
                row, col = ar + rng.uniform(-W, W) / 2 / PIXEL, ac + rng.uniform(-L, L) / 2 / PIXEL
            else:
                row, col = rng.uniform(-3, n + 3, 2)
            heading = rng.uniform(0, 360) if rng.random() < 0.6 else base_heading + rng.normal(0, 5)
        if not lay.free(row, col, radius * 0.9):
            continue
        lay.occupied.append((row, col, radius))
        paint = choose_paint(t, rng, wide=True)
        refl = paint_reflectance(paint, rng)
        if lay.options_rng is not None and lay.options_rng.random() < lay.options.relative_paint:
            refl = ground_relative_paint(lay.canvas.bands, row, col, radius, lay.options_rng)
        shadow_len = float(rng.uniform(2.0, 9.0)) if rng.random() < 0.8 else 0.0
        if _option_drawn(lay, lay.options.matched_paint):
            refl = ground_matched_paint(lay.canvas.bands, row, col, radius, lay.options_rng)
            shadow_len = sun_shadow_m(t.length_m * scale, lay.sun_elev, lay.options_rng)
        taxi = float(rng.uniform(3.0, 15.0)) if not t.rotor_blades and rng.random() < 0.06 else 0.0
        delta = PaintDelta(lay.canvas, row, col, max(t.length_m, t.span_m) / 2 / PIXEL + 1.5 + taxi * 0.6 / PIXEL)
        painters.paint_aircraft(lay.canvas, t, row, col, heading, refl, scale=scale, shadow_dir_deg=lay.shadow_dir,
                                shadow_len_m=shadow_len, shadow_factor=float(rng.uniform(0.35, 0.65)),
                                rotor_phase_deg=float(rng.uniform(0, 360)), swept_back=rng.random() < 0.4,
                                speed_mps=taxi)
        lay.objects.append(ChipObject(t.cls, float(row), float(col), t.name, t.length_m * scale, t.span_m * scale,
                                      float(heading % 360), taxi > 0, taxi, contrast=delta.peak()))


def _ground_under(bands: np.ndarray, row: float, col: float, radius_px: float) -> np.ndarray:
    """Median reflectance per band of the ground around (row, col) within ``radius_px`` (+1)."""
    h, w = bands.shape[1:]
    rad = max(2, int(radius_px) + 1)
    r0, c0 = int(np.clip(row, 0, h - 1)), int(np.clip(col, 0, w - 1))
    patch = bands[:, max(0, r0 - rad):r0 + rad + 1, max(0, c0 - rad):c0 + rad + 1]
    return np.median(patch.reshape(bands.shape[0], -1), axis=1)


def ground_matched_paint(bands: np.ndarray, row: float, col: float, radius_px: float,
                         rng: np.random.Generator) -> np.ndarray:
    """A flat grey paint within 0.05 of the ground's visible brightness: the body all but vanishes, and what is left
    is its shadow, its outline and the spectral tilt between a grey paint and a coloured ground.

    Why: every large aircraft of our scene renderer is brighter than its apron (set A: centre change +0.10), while
    the independent renderer's grey and dark transports change their centre by about 0 and carry most of their
    signal in shadow and wings (21 % of it within 3 px of the centre, against 60 % for ours). Swapped into set-A
    scenes those aircraft are found 8 % of the time; ours swapped into theirs 58 % (MODEL_CARD, stage 19)."""
    ground = _ground_under(bands, row, col, radius_px)
    level = float(ground[:3].mean()) + float(rng.uniform(-0.05, 0.05))
    return np.clip(level * rng.uniform(0.97, 1.03, 4), 0.02, 0.9).astype(np.float32)


def sun_shadow_m(length_m: float, sun_elev_deg: float, rng: np.random.Generator) -> float:
    """Shadow length of an aircraft from the sun's elevation: fuselage and tail at 0.15-0.3 of its length high (an
    An-124 casts 15-35 m at 30 degrees; the chips' usual 2-9 m leave a matched paint with nothing to show)."""
    height = length_m * float(rng.uniform(0.15, 0.3))
    return float(height / np.tan(np.deg2rad(max(sun_elev_deg, 10.0))))


def ground_relative_paint(bands: np.ndarray, row: float, col: float, radius_px: float,
                          rng: np.random.Generator) -> np.ndarray:
    """A paint 0.05-0.22 brighter or darker than the ground under the aircraft (per-band jitter).

    Why: the catalogue paints are fixed colours, so on our aprons a grey transport is nearly always brighter than the
    concrete by about 0.1 and dark paints are nearly black. Real grey transports on bright or dark concrete can sit
    either side of it by any margin, and a detector that learned "grey = a bit brighter" misses the rest (the
    independent renderer found 5 of 80 grey large aircraft)."""
    ground = _ground_under(bands, row, col, radius_px)
    margin = float(rng.uniform(0.05, 0.22))
    sign = 1.0 if rng.random() < 0.5 else -1.0
    if sign < 0 and float(ground[:3].mean()) - margin < 0.03:
        sign = 1.0  # nothing is darker than a dark ground by that much
    paint = ground + sign * margin * rng.uniform(0.85, 1.15, 4)
    return np.clip(paint, 0.02, 0.9).astype(np.float32)


def _add_fighter_rows(lay: _Layout, rng: np.random.Generator) -> None:
    """A row of 3-8 fighters or helicopters of one type side by side on an apron: the hard negative for
    ``large_aircraft`` (two or three fighters a span apart read as one big blob at 10 m). Draws from its own
    ``rng`` so chips rendered without it stay byte-identical."""
    small = [t for t in CATALOGUE.values() if t.cls != "large_aircraft"]
    t = small[int(rng.integers(len(small)))]
    if lay.aprons and rng.random() < 0.8:
        ar, ac, _, _, hd = lay.aprons[int(rng.integers(len(lay.aprons)))]
        row0, col0 = ar + rng.normal(0, 4), ac + rng.normal(0, 4)
    else:
        row0, col0, hd = *rng.uniform(8, lay.full - 8, 2), rng.uniform(0, 360)
    count = int(rng.integers(3, 9))
    step = max(t.span_m, t.length_m) * rng.uniform(1.05, 1.6) / PIXEL
    d = np.deg2rad(hd)
    facing = (hd + 90 + rng.choice([0, 180])) % 360
    shadow_len = float(rng.uniform(2.0, 6.0))
    paint = choose_paint(t, rng, wide=True)
    for i in range(count):
        row, col = row0 - np.cos(d) * step * (i - count / 2), col0 + np.sin(d) * step * (i - count / 2)
        radius = 0.5 * max(t.length_m, t.span_m) / PIXEL
        if not lay.free(row, col, radius * 0.9):
            continue
        lay.occupied.append((row, col, radius))
        refl = paint_reflectance(paint, rng)
        heading = (facing + rng.normal(0, 3)) % 360
        delta = PaintDelta(lay.canvas, row, col, radius + 1.5)
        painters.paint_aircraft(lay.canvas, t, row, col, heading, refl, scale=1.0, shadow_dir_deg=lay.shadow_dir,
                                shadow_len_m=shadow_len, shadow_factor=float(rng.uniform(0.35, 0.65)),
                                rotor_phase_deg=float(rng.uniform(0, 360)), swept_back=rng.random() < 0.4,
                                speed_mps=0.0)
        lay.objects.append(ChipObject(t.cls, float(row), float(col), t.name, t.length_m, t.span_m,
                                      float(heading), False, 0.0, contrast=delta.peak()))


def _add_trucks(lay: _Layout) -> None:
    rng = lay.rng
    n = lay.full
    # moving trucks on roads: columns or singles
    for pts, width in lay.roads:
        total = float(np.sum(np.hypot(*np.diff(pts, axis=0).T)))
        for _ in range(int(rng.choice([0, 1, 1, 2, 3]))):
            reverse = rng.random() < 0.5
            line = pts[::-1] if reverse else pts
            in_column = rng.random() < 0.5
            k = int(rng.integers(3, 16)) if in_column else 1
            speed0 = float(rng.uniform(1.0, 30.0)) if rng.random() < 0.9 else 0.0
            if speed0 > 0 and _option_drawn(lay, lay.options.slow_convoys):
                speed0 = float(lay.options_rng.uniform(6.0, 12.0))  # own stream: the rest of the chip unchanged
            gap_m = rng.uniform(20, 90)
            s = rng.uniform(0.2, 0.8) * total
            military = rng.random() < 0.4
            lane = (width / 4 if width < 14 else width * 0.3) * rng.uniform(0.6, 1.2)
            for _j in range(k):
                got = painters.lane_point(line, s, lane, PIXEL)
                if got is None:
                    break
                row, col, heading = got
                t = pick_truck(rng, military)
                speed = max(0.0, speed0 + rng.normal(0, 0.8)) if speed0 > 0 else 0.0
                s -= (t.length_m + gap_m * rng.uniform(0.7, 1.3)) / PIXEL
                if not lay.free(row, col, 0.4):
                    continue
                delta = PaintDelta(lay.canvas, row, col, t.length_m / 2 / PIXEL + speed * 0.6 / PIXEL + 0.5)
                painters.paint_truck(lay.canvas, row, col, heading, t.length_m, t.width_m, pick_paint(rng, military),
                                     speed_mps=speed, time_scale=float(rng.uniform(0.98, 1.02)),
                                     shadow_dir_deg=lay.shadow_dir, shadow_len_m=float(rng.uniform(0, 4)))
                lay.objects.append(ChipObject("vehicle", float(row), float(col), t.name, t.length_m, t.width_m,
                                              float(heading), speed > 0, float(speed), contrast=delta.peak()))
    # parked trucks in lots: rows side by side, or scattered
    for _ in range(int(rng.choice([0, 0, 1, 1, 2, 3]))):
        if lay.aprons and rng.random() < 0.5:
            ar, ac, L, W, hd = lay.aprons[int(rng.integers(len(lay.aprons)))]
            r0, c0 = ar + rng.normal(0, 4), ac + rng.normal(0, 4)
        else:
            r0, c0 = rng.uniform(0, n, 2)
            if lay.on_water(r0, c0):
                continue
            lot = landcover.palette()[landcover.cover_id(str(rng.choice(["gravel", "concrete", "asphalt"])))]
            painters.paint_box(lay.canvas, r0, c0, rng.uniform(60, 200), rng.uniform(40, 150), rng.uniform(0, 180),
                               lot * rng.uniform(0.8, 1.2))
        hd = rng.uniform(0, 360)
        military = rng.random() < 0.7
        per_row, n_rows = int(rng.integers(1, 12)), int(rng.integers(1, 5))
        pitch_side = rng.uniform(3.2, 8.0)
        pitch_row = rng.uniform(14, 30)
        scattered = rng.random() < 0.25
        h = np.deg2rad(hd)
        fwd = np.array([-np.cos(h), np.sin(h)])
        right = np.array([np.sin(h), np.cos(h)])
        paint = pick_paint(rng, military)
        for i in range(n_rows):
            for j in range(per_row):
                if rng.random() < 0.15:
                    continue
                pos = np.array([r0, c0]) + (right * j * pitch_side + fwd * i * pitch_row) / PIXEL
                heading = hd
                if scattered:
                    pos = pos + rng.normal(0, 3, 2)
                    heading = rng.uniform(0, 360)
                t = pick_truck(rng, military)
                if not lay.free(pos[0], pos[1], 0.3):
                    continue
                refl = paint * rng.uniform(0.9, 1.1) if rng.random() < 0.8 else pick_paint(rng, military)
                delta = PaintDelta(lay.canvas, pos[0], pos[1], t.length_m / 2 / PIXEL + 0.5)
                painters.paint_truck(lay.canvas, pos[0], pos[1], heading, t.length_m, t.width_m, refl,
                                     shadow_dir_deg=lay.shadow_dir, shadow_len_m=float(rng.uniform(0, 4)))
                lay.objects.append(ChipObject("vehicle", float(pos[0]), float(pos[1]), t.name, t.length_m,
                                              t.width_m, float(heading % 360), False, 0.0, contrast=delta.peak()))


# ---------------------------------------------------------------- entry point


def render_chip(seed: int, size: int = 128, options: ChipOptions = ChipOptions()) -> Chip:
    """One random chip: (4, size, size) reflectance, valid mask and truth objects. Deterministic per seed and
    options; ``ChipOptions()`` (all 0) is the chip as always."""
    rng = np.random.default_rng(derive_seed("chip", seed))
    full = size + 2 * PAD
    style = str(rng.choice(STYLES))
    labels = _labels(style, (full, full), rng)
    pal = landcover.palette(rng, jitter=0.18)
    surface = landcover.render_cover(labels, rng, pal=pal, texture_scale=float(rng.uniform(0.5, 1.8)))
    lay = _Layout(Canvas(surface), rng, labels, shadow_dir=float(rng.uniform(0, 360)),
                  sun_elev=float(rng.uniform(25, 70)), options=options,
                  options_rng=(np.random.default_rng(derive_seed("relative-paint", seed))
                               if options.layout_options_on else None),
                  tanks_rng=np.random.default_rng(derive_seed("roof-tanks", seed)) if options.roof_tanks > 0 else None)
    dry = lay.canvas.bands.copy()
    reps = max(1, int(round(size / 128)))  # more of everything on larger chips (roads already scale with size)
    for _ in range(reps):
        _add_aprons(lay, style)
        _add_roads(lay, style)
        _add_clutter(lay, style)
    _flood_and_boats(lay, dry)
    for _ in range(reps):
        _add_aircraft(lay, style)
        _add_trucks(lay)
    if options.fighter_rows > 0:
        extra = np.random.default_rng(derive_seed("fighter-rows", seed))
        if extra.random() < options.fighter_rows:
            _add_fighter_rows(lay, extra)

    params = sensor.draw_sensor(rng, wide=True)
    clouds = None
    if rng.random() < 0.3:
        frac = float(rng.uniform(0.05, 0.7))
        length = rng.uniform(5, 40)
        ang = np.deg2rad(rng.uniform(0, 360))
        clouds = cloud_layer((full, full), frac, rng, shadow_shift_px=(np.cos(ang) * length, np.sin(ang) * length),
                             edge_softness=float(rng.uniform(0.4, 1.6)))
    bands, valid = sensor.observe(lay.canvas.bands, params, rng, clouds)
    bands = np.ascontiguousarray(bands[:, PAD:PAD + size, PAD:PAD + size])
    valid = np.ascontiguousarray(valid[PAD:PAD + size, PAD:PAD + size])
    if rng.random() < 0.04:  # the edge of the swath / tile: no data (0) beyond a straight line
        ang = rng.uniform(0, 2 * np.pi)
        rr, cc = np.mgrid[0:size, 0:size]
        nodata = (rr - size / 2) * np.cos(ang) + (cc - size / 2) * np.sin(ang) > rng.uniform(0.1, 0.45) * size
        bands[:, nodata] = 0.0
        valid &= ~nodata
    objects = []
    for o in lay.objects:
        row, col = o.row - PAD, o.col - PAD
        if 0 <= row < size and 0 <= col < size:
            occluded = not bool(valid[int(row), int(col)])
            objects.append(ChipObject(o.cls, row, col, o.type, o.length_m, o.width_m, o.heading_deg, o.moving,
                                      o.speed_mps, occluded, o.contrast))
    return Chip(bands=bands, valid=valid, objects=objects)
