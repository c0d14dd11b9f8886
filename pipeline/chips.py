"""Evidence chips: true-colour PNG crops of one place on one date, with detections, scale bar, north arrow, caption.

Drawn with Pillow at an exact integer zoom so a chip pixel maps back to a scene pixel (the tests rely on it):
chip pixel (u, v) shows scene pixel (col0 + u // zoom, row0 + v // zoom). Chips of the same place on two dates use
the same window and the same fixed reflectance stretch, so brightness differences are real, not a re-stretch.
Scenes are on a UTM grid, so "up" is grid north (within a degree of true north at these latitudes).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.atomic import atomic_write
from pipeline.types import Detection, GridSpec, Scene

CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "large_aircraft": (255, 214, 0),
    "small_aircraft": (255, 140, 0),
    "helicopter": (0, 220, 255),
    "vehicle": (255, 60, 200),
    "vessel": (80, 255, 120),
}
CAPTION_HEIGHT = 34
REFLECTANCE_WHITE = 0.32  # reflectance shown as full white: bright concrete, before gamma
GAMMA = 1.0 / 1.5


def true_colour(scene: Scene) -> np.ndarray:
    """(H, W, 3) uint8 from B04/B03/B02 with one fixed stretch for every scene (comparable across dates)."""
    rgb = np.stack([scene.band("B04"), scene.band("B03"), scene.band("B02")], axis=-1)
    return stretch(rgb)


def stretch(rgb: np.ndarray) -> np.ndarray:
    scaled = np.clip(np.nan_to_num(rgb, nan=0.0) / REFLECTANCE_WHITE, 0.0, 1.0) ** GAMMA
    return (scaled * 255.0 + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class ChipWindow:
    """Integer pixel bounds of a chip in its scene's grid (never a bare tuple), plus that grid."""

    row0: int
    col0: int
    rows: int
    cols: int
    grid: GridSpec

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """Map bounds (minx, miny, maxx, maxy) in the scene CRS."""
        t = self.grid.transform
        x0, y0 = t @ (self.col0, self.row0)
        x1, y1 = t @ (self.col0 + self.cols, self.row0 + self.rows)
        return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    def pixel_of(self, x: float, y: float) -> tuple[float, float]:
        """Fractional (col, row) of map point (x, y) relative to the chip's top-left corner."""
        col, row = ~self.grid.transform @ (x, y)
        return col - self.col0, row - self.row0

    def contains(self, x: float, y: float) -> bool:
        c, r = self.pixel_of(x, y)
        return 0 <= c < self.cols and 0 <= r < self.rows


def window_around(grid: GridSpec, x: float, y: float, size_px: int) -> ChipWindow:
    """A ``size_px`` square window centred on map (x, y), shifted (not shrunk) to stay inside the scene."""
    rows, cols = min(size_px, grid.height), min(size_px, grid.width)
    col, row = ~grid.transform @ (x, y)
    col0 = int(math.floor(col)) - cols // 2
    row0 = int(math.floor(row)) - rows // 2
    col0 = max(0, min(col0, grid.width - cols))
    row0 = max(0, min(row0, grid.height - rows))
    return ChipWindow(row0=row0, col0=col0, rows=rows, cols=cols, grid=grid)


@dataclass(frozen=True)
class Chip:
    """A written chip and what it shows."""

    path: Path
    window: ChipWindow
    zoom: int
    acquisition_id: str
    caption: str
    detection_ids: tuple[str, ...] = field(default=())

    def image_xy(self, x: float, y: float) -> tuple[float, float]:
        """Position (u, v) of map point (x, y) in the PNG (caption strip excluded; it sits below)."""
        c, r = self.window.pixel_of(x, y)
        return c * self.zoom, r * self.zoom


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


def _nice_length(max_m: float) -> float:
    """Largest 1/2/5 x 10^k metres not above ``max_m`` (scale bar length)."""
    exp = 10 ** math.floor(math.log10(max_m))
    for mult in (5, 2, 1):
        if mult * exp <= max_m:
            return mult * exp
    return exp


def draw_scale_bar(draw: ImageDraw.ImageDraw, width: int, height: int, metres_per_px: float, font) -> None:
    """A white bar with a black outline, bottom-left, about a quarter of the width, labelled in m or km."""
    length_m = _nice_length(width * 0.28 * metres_per_px)
    length_px = length_m / metres_per_px
    x0, y1 = 8, height - 8
    draw.rectangle([x0 - 1, y1 - 7, x0 + length_px + 1, y1 + 1], fill=(0, 0, 0))
    draw.rectangle([x0, y1 - 6, x0 + length_px, y1], fill=(255, 255, 255))
    label = f"{length_m / 1000:g} km" if length_m >= 1000 else f"{length_m:g} m"
    draw.text((x0, y1 - 22), label, fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0))


def draw_north_arrow(draw: ImageDraw.ImageDraw, width: int, font) -> None:
    """A north arrow in the top-right corner (grid north = up)."""
    cx, top = width - 16, 8
    draw.polygon([(cx, top), (cx - 7, top + 18), (cx, top + 13), (cx + 7, top + 18)], fill=(255, 255, 255),
                 outline=(0, 0, 0))
    draw.text((cx - 4, top + 19), "N", fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0))


def _outline(det: Detection, u: float, v: float, px_per_m: float) -> list[tuple[float, float]]:
    """Corners of the detection's footprint in chip pixels, grown by one scene pixel so its centre stays visible."""
    length = max(det.length_m or 0.0, 20.0) + 20.0
    width = max(det.width_m or 0.0, 20.0) + 20.0
    heading = math.radians(det.heading_deg or 0.0)
    # heading 0 = north (up, -v), clockwise
    ax, ay = math.sin(heading), -math.cos(heading)
    bx, by = math.cos(heading), math.sin(heading)
    hl, hw = length / 2 * px_per_m, width / 2 * px_per_m
    return [(u + sx * hl * ax + sy * hw * bx, v + sx * hl * ay + sy * hw * by)
            for sx, sy in ((1, 1), (1, -1), (-1, -1), (-1, 1))]


def render_chip(scene: Scene, window: ChipWindow, path: str | Path, *, detections: Iterable[Detection] = (),
                highlight: Iterable[str] = (), label: str = "", zoom: int = 4, rgb: np.ndarray | None = None) -> Chip:
    """Write the chip PNG of ``window`` (atomically) and return what it shows.

    ``detections`` inside the window are outlined in their class colour; those whose id is in ``highlight``
    (the alert's evidence) get a thicker outline. ``rgb`` may pass a precomputed :func:`true_colour`.
    """
    path = Path(path)
    rgb = true_colour(scene) if rgb is None else rgb
    crop = rgb[window.row0:window.row0 + window.rows, window.col0:window.col0 + window.cols]
    image = Image.fromarray(np.ascontiguousarray(crop), "RGB").resize(
        (window.cols * zoom, window.rows * zoom), Image.Resampling.NEAREST)
    width, height = image.size
    canvas = Image.new("RGB", (width, height + CAPTION_HEIGHT), (20, 20, 20))
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    font, small = _font(12), _font(11)
    metres_per_px = window.grid.pixel_size / zoom
    highlight = set(highlight)
    drawn = []
    for det in detections:
        c, r = window.pixel_of(det.x, det.y)
        if not (0 <= c < window.cols and 0 <= r < window.rows):
            continue
        u, v = c * zoom, r * zoom
        colour = CLASS_COLOURS.get(det.cls, (255, 255, 255))
        thick = det.id in highlight
        draw.polygon(_outline(det, u, v, 1.0 / metres_per_px), outline=colour, width=3 if thick else 1)
        if det.id:
            drawn.append(det.id)
    draw_scale_bar(draw, width, height, metres_per_px, small)
    draw_north_arrow(draw, width, small)
    acq = scene.acquisition
    when = acq.datetime.strftime("%Y-%m-%d %H:%M UTC")
    caption = f"{when} · {acq.sensor}" + (f" · {label}" if label else "")
    valid = scene.valid[window.row0:window.row0 + window.rows, window.col0:window.col0 + window.cols]
    second = f"cloud-free {valid.mean():.0%}"
    if scene.simulated:
        second = "SIMULATED · " + second
    draw.text((6, height + 3), caption, fill=(235, 235, 235), font=font)
    draw.text((6, height + 18), second, fill=(255, 120, 120) if scene.simulated else (200, 200, 200), font=small)
    with atomic_write(path) as tmp:
        canvas.save(tmp, format="PNG")
    return Chip(path=path, window=window, zoom=zoom, acquisition_id=acq.id, caption=caption,
                detection_ids=tuple(drawn))


def cluster_points(points: list[tuple[float, float]], radius_m: float, limit: int) -> list[tuple[float, float]]:
    """Greedy chip centres: each point joins the first centre within ``radius_m``; the busiest ``limit`` are kept.

    A centre is the mean of its members, so a column of trucks gets one chip on its middle, not one per truck.
    """
    groups: list[list[tuple[float, float]]] = []
    for p in points:
        for g in groups:
            gx = sum(q[0] for q in g) / len(g)
            gy = sum(q[1] for q in g) / len(g)
            if math.hypot(p[0] - gx, p[1] - gy) <= radius_m:
                g.append(p)
                break
        else:
            groups.append([p])
    groups.sort(key=len, reverse=True)
    return [(sum(q[0] for q in g) / len(g), sum(q[1] for q in g) / len(g)) for g in groups[:limit]]
