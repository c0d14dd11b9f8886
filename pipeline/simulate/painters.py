"""Paint one kind of thing onto a Canvas: roads, aprons, buildings, tanks, boats, aircraft, trucks.

All positions are pixel coordinates (see canvas.py); sizes are metres. Shadows fall towards ``shadow_dir_deg``
(compass, away from the sun) by ``height / tan(sun elevation)``.
"""

from __future__ import annotations

import numpy as np

from pipeline.simulate.aircraft import AircraftType, plan_form
from pipeline.simulate.canvas import Canvas, Placement, rect
from pipeline.simulate.physics import band_displacements_px
from pipeline.simulate.vehicles import car_shapes, truck_shapes


def heading_between(r0: float, c0: float, r1: float, c1: float) -> float:
    """Compass heading (deg, 0 = north/up, clockwise) from pixel (r0, c0) to (r1, c1)."""
    return float(np.rad2deg(np.arctan2(c1 - c0, -(r1 - r0))) % 360.0)


def shadow_shift(direction_deg: float, length_px: float) -> tuple[float, float]:
    h = np.deg2rad(direction_deg)
    return (-np.cos(h) * length_px, np.sin(h) * length_px)


def paint_polyline(canvas: Canvas, pts_px: np.ndarray, width_m: float, reflectance: np.ndarray,
                   alpha: float = 1.0, ss: int = 4) -> None:
    """A road/taxiway: each segment as a rotated rectangle (slightly overlapping so joints stay closed)."""
    ps = canvas.pixel_size
    for (r0, c0), (r1, c1) in zip(pts_px[:-1], pts_px[1:], strict=True):
        seg_len = float(np.hypot(r1 - r0, c1 - c0)) * ps
        if seg_len < 1e-3:
            continue
        heading = heading_between(r0, c0, r1, c1)
        # long segments are split so the rasterised window stays small
        n = max(1, int(np.ceil(seg_len / 400.0)))
        for k in range(n):
            a, b = k / n, (k + 1) / n
            cr, cc = r0 + (r1 - r0) * (a + b) / 2, c0 + (c1 - c0) * (a + b) / 2
            canvas.paint([rect(seg_len / n + width_m * 0.5, width_m)], Placement(cr, cc, heading, ps),
                         reflectance, alpha=alpha, ss=ss)


def paint_box(canvas: Canvas, row: float, col: float, length_m: float, width_m: float, heading: float,
              reflectance: np.ndarray, *, height_m: float = 0.0, shadow_dir_deg: float = 0.0,
              sun_elev_deg: float = 40.0, shadow_factor: float = 0.45, ss: int = 4) -> None:
    """A flat-roofed building, hangar, apron or container stack with its cast shadow."""
    where = Placement(row, col, heading, canvas.pixel_size)
    shapes = [rect(length_m, width_m)]
    if height_m > 0:
        length_px = height_m / np.tan(np.deg2rad(sun_elev_deg)) / canvas.pixel_size
        canvas.darken(shapes, where, shadow_factor, shift_px=shadow_shift(shadow_dir_deg, length_px), ss=ss)
    canvas.paint(shapes, where, reflectance, ss=ss)


def circle(radius_m: float, n: int = 16) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(a) * radius_m, np.sin(a) * radius_m], axis=1)


def paint_tank(canvas: Canvas, row: float, col: float, radius_m: float, reflectance: np.ndarray,
               shadow_dir_deg: float, sun_elev_deg: float, height_m: float = 12.0) -> None:
    where = Placement(row, col, 0.0, canvas.pixel_size)
    shapes = [circle(radius_m)]
    length_px = height_m / np.tan(np.deg2rad(sun_elev_deg)) / canvas.pixel_size
    canvas.darken(shapes, where, 0.45, shift_px=shadow_shift(shadow_dir_deg, length_px), ss=4)
    canvas.paint(shapes, where, reflectance, ss=4)


def paint_boat(canvas: Canvas, row: float, col: float, length_m: float, heading: float,
               reflectance: np.ndarray, wake: bool = False) -> None:
    """A small vessel: pointed hull, optional bright wake behind it."""
    w = max(2.0, length_m * 0.22)
    hull = np.array([[length_m / 2, 0], [length_m / 4, w / 2], [-length_m / 2, w / 2], [-length_m / 2, -w / 2],
                     [length_m / 4, -w / 2]])
    where = Placement(row, col, heading, canvas.pixel_size)
    if wake:
        canvas.paint([np.array([[-length_m / 2, w / 2], [-length_m * 4, w * 3], [-length_m * 4, -w * 3],
                                [-length_m / 2, -w / 2]])], where, np.array([0.12, 0.12, 0.11, 0.10]), alpha=0.5)
    canvas.paint([hull], where, reflectance, ss=6)


def paint_aircraft(canvas: Canvas, t: AircraftType, row: float, col: float, heading: float,
                   reflectance: np.ndarray, *, scale: float = 1.0, shadow_dir_deg: float = 0.0,
                   shadow_len_m: float = 0.0, shadow_factor: float = 0.45, rotor_phase_deg: float = 0.0,
                   swept_back: bool = False, speed_mps: float = 0.0) -> None:
    """An aircraft and its shadow; a taxiing one (``speed_mps`` > 0) shows the band offset like a truck."""
    shapes = plan_form(t, scale=scale, rotor_phase_deg=rotor_phase_deg, swept_back=swept_back)
    where = Placement(row, col, heading, canvas.pixel_size)
    shifts = band_displacements_px(speed_mps, heading, canvas.pixel_size) if speed_mps > 0 else None
    if shadow_len_m > 0:
        canvas.darken(shapes, where, shadow_factor,
                      shift_px=shadow_shift(shadow_dir_deg, shadow_len_m / canvas.pixel_size), ss=6,
                      band_shifts_px=shifts)
    canvas.paint(shapes, where, reflectance, band_shifts_px=shifts, ss=8)


def paint_truck(canvas: Canvas, row: float, col: float, heading: float, length_m: float, width_m: float,
                reflectance: np.ndarray, *, speed_mps: float = 0.0, time_scale: float = 1.0,
                shadow_dir_deg: float = 0.0, shadow_len_m: float = 0.0) -> None:
    """A truck; when moving each band is painted at its own acquisition instant (the band-offset rainbow)."""
    shapes = truck_shapes(length_m, width_m)
    where = Placement(row, col, heading, canvas.pixel_size)
    shifts = None
    if speed_mps > 0:
        shifts = band_displacements_px(speed_mps, heading, canvas.pixel_size, time_scale)
    if shadow_len_m > 0:  # the shadow moves with the truck: each band sees it where the truck was at that instant
        canvas.darken(shapes, where, 0.55, shift_px=shadow_shift(shadow_dir_deg, shadow_len_m / canvas.pixel_size),
                      ss=8, band_shifts_px=shifts)
    canvas.paint(shapes, where, reflectance, band_shifts_px=shifts, ss=24)  # 0.4 m: a 2.5 m width to ~10%


def paint_car(canvas: Canvas, row: float, col: float, heading: float, reflectance: np.ndarray,
              speed_mps: float = 0.0) -> None:
    shifts = band_displacements_px(speed_mps, heading, canvas.pixel_size) if speed_mps > 0 else None
    canvas.paint(car_shapes(), Placement(row, col, heading, canvas.pixel_size), reflectance,
                 band_shifts_px=shifts, ss=10)


def paint_runway_markings(canvas: Canvas, row: float, col: float, heading: float, length_m: float,
                          width_m: float, rng: np.random.Generator) -> None:
    """ICAO-style white paint: threshold 'piano keys', aiming-point bars, touchdown-zone pairs, centreline dashes,
    and dark rubber deposits in the touchdown zones. At 10 m they are bright bars and patches: good distractors."""
    where = Placement(row, col, heading, canvas.pixel_size)
    white = np.array([0.55, 0.57, 0.58, 0.60], dtype=np.float32) * rng.uniform(0.8, 1.1)
    half = length_m / 2.0
    n_keys = max(4, int(width_m / 3.6) - 2)
    for sign in (1.0, -1.0):
        end = sign * (half - 6.0 - 15.0)  # keys start 6 m in from the end, 30 m long
        keys = [rect(30.0, 1.8, cx=end, cy=(k - (n_keys - 1) / 2) * 3.6) for k in range(n_keys)]
        canvas.paint(keys, where, white, alpha=0.9, ss=8)
        rubber = rect(600.0, width_m * 0.4, cx=sign * (half - 400.0))
        canvas.darken([rubber], where, float(rng.uniform(0.7, 0.9)), ss=2)
        aim = sign * (half - 400.0)
        canvas.paint([rect(50.0, 7.0, cx=aim, cy=w) for w in (-width_m * 0.3, width_m * 0.3)], where, white,
                     alpha=0.9, ss=6)
        for d in (150.0, 300.0, 600.0):
            canvas.paint([rect(22.5, 1.8, cx=sign * (half - d), cy=w) for w in (-width_m * 0.3, width_m * 0.3)],
                         where, white, alpha=0.8, ss=8)
    for x in np.arange(-half + 450.0, half - 450.0, 50.0):  # one at a time: small windows, fast
        canvas.paint([rect(30.0, 0.9, cx=x)], where, white, alpha=0.7, ss=10)


def point_along(pts: np.ndarray, s_px: float) -> tuple[np.ndarray, float] | None:
    """Point and heading at arc length ``s_px`` along a polyline (None beyond its end)."""
    seg = np.diff(pts, axis=0)
    lens = np.hypot(seg[:, 0], seg[:, 1])
    if s_px < 0:
        return None
    acc = 0.0
    for k, L in enumerate(lens):
        if s_px <= acc + L and L > 0:
            t = (s_px - acc) / L
            p = pts[k] + seg[k] * t
            return p, heading_between(pts[k][0], pts[k][1], pts[k + 1][0], pts[k + 1][1])
        acc += L
    return None


def lane_point(pts: np.ndarray, s_px: float, offset: float, per_px: float = 1.0) -> tuple[float, float, float] | None:
    """(row, col, heading) of a vehicle at arc length ``s_px`` along a road polyline, ``offset / per_px`` pixels to
    the right of its direction of travel (its lane); None beyond the road's end. (The offset is scaled after the
    direction vector, the order the simulator has always used, so seeded scenes stay byte-identical.)"""
    got = point_along(pts, s_px)
    if got is None:
        return None
    p, heading = got
    h = np.deg2rad(heading)
    row, col = p + np.array([np.sin(h), np.cos(h)]) * offset / per_px  # (drow, dcol) to the right of travel
    return row, col, heading
