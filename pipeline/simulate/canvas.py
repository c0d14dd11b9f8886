"""Sub-pixel painting of plan-form shapes onto a 10 m reflectance canvas.

Shapes are convex polygons in metres in the object's own frame: x forward (nose / direction of travel), y to the
right. They are rasterised on a supersampled grid (``ss`` x ``ss`` sub-pixels per 10 m pixel), averaged to
fractional pixel coverage and alpha-composited; the sensor PSF is applied later to the whole image.

Pixel coordinates: continuous (row, col) with pixel (i, j) covering [i, i+1) x [j, j+1), so the centre of pixel
(0, 0) is (0.5, 0.5). Heading 0 = north = up (-row), clockwise, so east = +col.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Polygon = np.ndarray  # (N, 2) vertices (x forward, y right) in metres, convex, any winding


@dataclass(frozen=True)
class Placement:
    """Where a shape set goes: centre in pixel coordinates, heading, pixel size."""

    row: float
    col: float
    heading_deg: float
    pixel_size: float = 10.0

    def to_pixels(self, poly: Polygon, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """(N, 2) vertices as (row, col) in pixel coordinates."""
        h = np.deg2rad(self.heading_deg)
        fwd = np.array([-np.cos(h), np.sin(h)])  # (drow, dcol) of +x
        right = np.array([np.sin(h), np.cos(h)])  # (drow, dcol) of +y
        pts = (poly[:, :1] * fwd + poly[:, 1:2] * right) / self.pixel_size
        return pts + np.array([self.row + shift[0], self.col + shift[1]])


def rect(length: float, width: float, cx: float = 0.0, cy: float = 0.0) -> Polygon:
    """Axis-aligned rectangle in the object frame, centred at (cx, cy)."""
    hl, hw = length / 2.0, width / 2.0
    return np.array([[cx + hl, cy - hw], [cx + hl, cy + hw], [cx - hl, cy + hw], [cx - hl, cy - hw]])


def rotated_rect(length: float, width: float, angle_deg: float, cx: float = 0.0, cy: float = 0.0) -> Polygon:
    """Rectangle rotated by ``angle_deg`` (clockwise, from +x) about its centre (cx, cy)."""
    r = rect(length, width)
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    return r @ rot + np.array([cx, cy])


def coverage(polys_px: list[np.ndarray], ss: int, shape: tuple[int, int]) -> tuple[np.ndarray, int, int] | None:
    """Fractional coverage of the union of convex pixel-space polygons.

    Returns (cov[h, w], row0, col0) for the bounding window clipped to ``shape``, or None when off the canvas.
    """
    allpts = np.concatenate(polys_px)
    r0 = max(int(np.floor(allpts[:, 0].min())), 0)
    c0 = max(int(np.floor(allpts[:, 1].min())), 0)
    r1 = min(int(np.ceil(allpts[:, 0].max())), shape[0])
    c1 = min(int(np.ceil(allpts[:, 1].max())), shape[1])
    if r1 <= r0 or c1 <= c0:
        return None
    h, w = r1 - r0, c1 - c0
    sub = (np.arange(ss) + 0.5) / ss
    rows = (r0 + (np.arange(h)[:, None] + sub[None, :]).ravel())[:, None]
    cols = (c0 + (np.arange(w)[:, None] + sub[None, :]).ravel())[None, :]
    inside_any = np.zeros((h * ss, w * ss), dtype=bool)
    for poly in polys_px:
        inside = np.ones_like(inside_any)
        pts = poly.tolist()
        n = len(pts)
        # orientation-independent convex test: all cross products share a sign
        area2 = sum(pts[k][0] * pts[(k + 1) % n][1] - pts[(k + 1) % n][0] * pts[k][1] for k in range(n))
        sign = 1.0 if area2 >= 0 else -1.0
        for k in range(n):
            (ar, ac), (br, bc) = pts[k], pts[(k + 1) % n]
            cross = (sign * (br - ar)) * (cols - ac) - (sign * (bc - ac)) * (rows - ar)
            inside &= cross >= 0
        inside_any |= inside
    cov = inside_any.reshape(h, ss, w, ss).mean(axis=(1, 3))
    return cov.astype(np.float32), r0, c0


class Canvas:
    """Four-band reflectance image being painted (B02, B03, B04, B08)."""

    def __init__(self, bands: np.ndarray, pixel_size: float = 10.0):
        self.bands = bands.astype(np.float32, copy=False)
        self.pixel_size = pixel_size

    @property
    def shape(self) -> tuple[int, int]:
        return self.bands.shape[1], self.bands.shape[2]

    def paint(self, shapes: list[Polygon], where: Placement, reflectance: np.ndarray, *, alpha: float = 1.0,
              band_shifts_px: np.ndarray | None = None, ss: int = 8) -> bool:
        """Alpha-composite ``shapes`` with per-band ``reflectance`` (4,); ``band_shifts_px`` (4, 2) moves each band.

        Returns whether anything landed on the canvas.
        """
        refl = np.asarray(reflectance, dtype=np.float32)
        if band_shifts_px is None or np.allclose(band_shifts_px, band_shifts_px[0], atol=1e-3):
            shift = (0.0, 0.0) if band_shifts_px is None else tuple(band_shifts_px[0])
            got = coverage([where.to_pixels(p, shift) for p in shapes], ss, self.shape)
            if got is None:
                return False
            cov, r0, c0 = got
            a = alpha * cov[None]
            win = self.bands[:, r0:r0 + cov.shape[0], c0:c0 + cov.shape[1]]
            win *= 1.0 - a
            win += a * refl[:, None, None]
            return True
        hit = False
        for b in range(self.bands.shape[0]):
            got = coverage([where.to_pixels(p, tuple(band_shifts_px[b])) for p in shapes], ss, self.shape)
            if got is None:
                continue
            hit = True
            cov, r0, c0 = got
            a = alpha * cov
            win = self.bands[b, r0:r0 + cov.shape[0], c0:c0 + cov.shape[1]]
            win *= 1.0 - a
            win += a * refl[b]
        return hit

    def darken(self, shapes: list[Polygon], where: Placement, factor: float, *, shift_px=(0.0, 0.0),
               ss: int = 6, band_shifts_px: np.ndarray | None = None) -> None:
        """Multiply covered pixels towards ``factor`` (a shadow: 1 = no shadow, 0.3 = deep shadow).

        ``band_shifts_px`` (4, 2) moves the shadow per band (the shadow of a moving object moves with it)."""
        if band_shifts_px is not None:
            for b in range(self.bands.shape[0]):
                shift = (shift_px[0] + band_shifts_px[b][0], shift_px[1] + band_shifts_px[b][1])
                got = coverage([where.to_pixels(p, shift) for p in shapes], ss, self.shape)
                if got is not None:
                    cov, r0, c0 = got
                    self.bands[b, r0:r0 + cov.shape[0], c0:c0 + cov.shape[1]] *= 1.0 - (1.0 - factor) * cov
            return
        got = coverage([where.to_pixels(p, shift_px) for p in shapes], ss, self.shape)
        if got is None:
            return
        cov, r0, c0 = got
        self.bands[:, r0:r0 + cov.shape[0], c0:c0 + cov.shape[1]] *= 1.0 - (1.0 - factor) * cov[None]


class PaintDelta:
    """How much painting one object changed a window of the canvas: its visibility before the sensor (PSF, noise).

    Reads the canvas only (no random draws), so measuring never changes what is rendered."""

    def __init__(self, canvas: Canvas, row: float, col: float, radius_px: float):
        h, w = canvas.shape
        r = int(np.ceil(radius_px)) + 2
        self.win = (slice(max(int(row) - r, 0), min(int(row) + r + 1, h)),
                    slice(max(int(col) - r, 0), min(int(col) + r + 1, w)))
        self.canvas = canvas
        self.before = canvas.bands[:, self.win[0], self.win[1]].copy()

    def peak(self) -> float:
        """Largest change of the band-mean reflectance over the window."""
        after = self.canvas.bands[:, self.win[0], self.win[1]]
        if after.size == 0:
            return 0.0
        return round(float(np.abs(after - self.before).mean(axis=0).max()), 4)
