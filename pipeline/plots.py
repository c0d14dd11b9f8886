"""Report figures (matplotlib, Agg, no pyplot state): the per-AOI time series and the overview of the latest scene.

The time series is what an analyst reads first: counts per acquisition date, the baseline band the diff stage
compares against, cloudy dates marked (their counts are not evidence of anything), and alert dates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrow

from pipeline.atomic import atomic_write
from pipeline.chips import CLASS_COLOURS, _nice_length, true_colour
from pipeline.observe import confident_large_aircraft
from pipeline.types import AOI, Alert, Column, Detection, Observation, Scene, reproject_geometry


@dataclass(frozen=True)
class SeriesPoint:
    """One acquisition's figures as plotted (also the row of observations.csv)."""

    when: datetime
    acquisition_id: str
    valid_fraction: float
    large_aircraft: int
    large_aircraft_confident: int | None  # scoring >= diff.surge_min_score (surges' count); None: stored before it
    small_aircraft: int
    helicopter: int
    vehicle: int
    vessel: int  # moored at the piers and elsewhere in the AOI's water zones
    outbound_vehicles: int
    inbound_vehicles: int
    outbound_columns: int
    inbound_columns: int


def series_point(obs: Observation) -> SeriesPoint:
    out_cols = [c for c in obs.columns if c.direction == "outbound"]
    in_cols = [c for c in obs.columns if c.direction == "inbound"]
    return SeriesPoint(
        when=obs.acquisition.datetime,
        acquisition_id=obs.acquisition.id,
        valid_fraction=obs.valid_fraction,
        large_aircraft=int(obs.counts.get("large_aircraft", 0)),
        large_aircraft_confident=confident_large_aircraft(obs),
        small_aircraft=int(obs.counts.get("small_aircraft", 0)),
        helicopter=int(obs.counts.get("helicopter", 0)),
        vehicle=int(obs.counts.get("vehicle", 0)),
        vessel=int(obs.counts.get("vessel", 0)),
        outbound_vehicles=sum(c.vehicles for c in out_cols),
        inbound_vehicles=sum(c.vehicles for c in in_cols),
        outbound_columns=len(out_cols),
        inbound_columns=len(in_cols),
    )


def baseline_band(points: list[SeriesPoint], attr: str, *, window_days: int, min_history: int,
                  min_valid: float) -> tuple[list[datetime], np.ndarray, np.ndarray]:
    """Per date, mean ± 1 std of ``attr`` over the cloud-free observations of the preceding ``window_days``.

    Dates with fewer than ``min_history`` such observations have no band (NaN), as the diff stage has no baseline.
    """
    dates, lo, hi = [], [], []
    for p in points:
        since = p.when - timedelta(days=window_days)
        prior = [v for q in points if since <= q.when < p.when and q.valid_fraction >= min_valid
                 for v in [getattr(q, attr)] if v is not None]
        dates.append(p.when)
        if len(prior) >= min_history:
            m, s = float(np.mean(prior)), float(np.std(prior))
            lo.append(max(0.0, m - s))
            hi.append(m + s)
        else:
            lo.append(np.nan)
            hi.append(np.nan)
    return dates, np.array(lo), np.array(hi)


def _save(fig: Figure, path: Path, dpi: int = 100) -> Path:
    FigureCanvasAgg(fig)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def time_series_figure(observations: list[Observation], *, title: str, alerts: list[Alert] = (),
                       window_days: int = 30, min_history: int = 2, min_valid: float = 0.6,
                       simulated: bool = False) -> Figure:
    """Counts of large and small aircraft, outbound and inbound moving vehicles per date; baseline band; clouds."""
    points = [series_point(o) for o in observations]
    fig = Figure(figsize=(9, 4.2), layout="constrained")
    ax = fig.add_subplot()
    if not points:
        ax.text(0.5, 0.5, "no observations", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        return fig
    dates = [p.when for p in points]
    cloudy = [p.valid_fraction < min_valid for p in points]
    band_dates, lo, hi = baseline_band(points, "large_aircraft_confident", window_days=window_days,
                                       min_history=min_history, min_valid=min_valid)
    ax.fill_between(band_dates, lo, hi, color=np.array(CLASS_COLOURS["large_aircraft"]) / 255, alpha=0.22, step="mid",
                    label="confident large aircraft baseline (mean ± 1 sd)")
    series = (
        ("large_aircraft", "large aircraft", CLASS_COLOURS["large_aircraft"], "o", "-"),
        ("large_aircraft_confident", "large aircraft, confident (surge count)", CLASS_COLOURS["large_aircraft"], "D",
         ":"),
        ("small_aircraft", "small aircraft", CLASS_COLOURS["small_aircraft"], "s", "-"),
        ("outbound_vehicles", "moving vehicles outbound", (200, 30, 30), "^", "-"),
        ("inbound_vehicles", "moving vehicles inbound", (30, 90, 200), "v", "--"),
    )
    if any(p.vessel for p in points):  # a naval base: its ships at the piers
        series += (("vessel", "vessels", CLASS_COLOURS["vessel"], "P", "-"),)
    for attr, label, colour, marker, style in series:
        values = np.array([getattr(p, attr) for p in points], dtype=float)
        clear = np.where(cloudy, np.nan, values)
        c = np.array(colour) / 255
        ax.plot(dates, clear, linestyle=style, marker=marker, color=c, label=label, markersize=5)
        if any(cloudy):
            ax.plot([d for d, cl in zip(dates, cloudy, strict=True) if cl], values[np.array(cloudy)], linestyle="none",
                    marker=marker, markerfacecolor="none", color=c, markersize=5)
    for d, cl in zip(dates, cloudy, strict=True):
        if cl:
            ax.axvspan(d - timedelta(hours=12), d + timedelta(hours=12), color="0.6", alpha=0.35, lw=0)
    if any(cloudy):
        ax.plot([], [], color="0.6", alpha=0.5, lw=8, label=f"cloudy (< {min_valid:.0%} clear; hollow = not counted)")
    for alert in alerts:
        ax.axvline(alert.first_seen, color="crimson", linestyle=":", lw=1.2)
        ax.annotate(alert.kind, (alert.first_seen, 1.0), xycoords=("data", "axes fraction"), rotation=90,
                    va="top", ha="right", fontsize=7, color="crimson")
    ax.set_ylabel("count per acquisition")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(title + ("  [SIMULATED scenes]" if simulated else ""), color="crimson" if simulated else "black")
    ax.legend(fontsize=7, loc="upper left", ncols=2)
    fig.autofmt_xdate()
    return fig


def time_series_plot(observations: list[Observation], path: str | Path, **kwargs) -> Path:
    return _save(time_series_figure(observations, **kwargs), Path(path))


def overview_figure(scene: Scene, aoi: AOI, detections: list[Detection], columns: list[Column], *,
                    title: str) -> Figure:
    """The latest scene in true colour with the AOI's zones and roads, detections by class and columns as arrows."""
    rgb = true_colour(scene)
    minx, miny, maxx, maxy = scene.grid.bounds
    aspect = scene.height / max(scene.width, 1)
    fig = Figure(figsize=(7, max(3.0, min(12.0, 7 * aspect / 0.92))))
    ax = fig.add_axes((0.0, 0.0, 1.0, 0.92))
    ax.imshow(rgb, extent=(minx, maxx, miny, maxy), interpolation="nearest")
    for zone in aoi.zones:
        geom = reproject_geometry(zone.polygon, "EPSG:4326", scene.crs)
        xs, ys = geom.exterior.xy
        ax.plot(xs, ys, color="white", lw=0.8, alpha=0.8)
        c = geom.representative_point()
        ax.text(c.x, c.y, zone.name, color="white", fontsize=6, ha="center", va="center", alpha=0.9)
    for road in aoi.roads:
        geom = reproject_geometry(road.line, "EPSG:4326", scene.crs)
        xs, ys = geom.xy
        ax.plot(xs, ys, color="0.85", lw=0.8, linestyle="--", alpha=0.8)
    for cls, colour in CLASS_COLOURS.items():
        pts = [d for d in detections if d.cls == cls]
        if pts:
            label = f"{cls.replace('_', ' ')} ({len(pts)})"
            ax.scatter([d.x for d in pts], [d.y for d in pts], s=28 if cls != "vehicle" else 8, facecolors="none",
                       edgecolors=[np.array(colour) / 255], linewidths=1.2, label=label)
    direction_colour = {"outbound": "red", "inbound": "deepskyblue", "unknown": "white"}
    for col in columns:
        xs, ys = reproject_geometry(col.line, "EPSG:4326", scene.crs).xy
        colour = direction_colour.get(col.direction, "white")
        ax.plot(xs, ys, color=colour, lw=2)
        if len(xs) >= 2:
            # arrow head in the direction of travel (heading: 0 = north, clockwise)
            h = np.radians(col.heading_deg)
            ax.add_patch(FancyArrow(xs[-1], ys[-1], 60 * np.sin(h), 60 * np.cos(h), width=15, head_width=90,
                                    head_length=90, color=colour, length_includes_head=False))
    for direction, colour in direction_colour.items():
        n = sum(1 for c in columns if c.direction == direction)
        if n:
            ax.plot([], [], color=colour, lw=2, label=f"{direction} column ({n})")
    ax.set_xlim(minx, maxx)
    ax.set_ylim(miny, maxy)
    ax.set_xticks([])
    ax.set_yticks([])
    width_m = maxx - minx
    bar = _nice_length(width_m * 0.25)
    x0, y0 = minx + width_m * 0.03, miny + (maxy - miny) * 0.04
    ax.plot([x0, x0 + bar], [y0, y0], color="white", lw=4, solid_capstyle="butt")
    ax.text(x0, y0 + (maxy - miny) * 0.015, f"{bar / 1000:g} km" if bar >= 1000 else f"{bar:g} m", color="white",
            fontsize=8)
    ax.annotate("N", xy=(0.96, 0.95), xytext=(0.96, 0.84), xycoords="axes fraction", ha="center", color="white",
                fontsize=10, arrowprops={"arrowstyle": "-|>", "color": "white"})
    acq = scene.acquisition
    ax.set_title(f"{title}\n{acq.datetime:%Y-%m-%d %H:%M} UTC, {acq.sensor}, {scene.valid_fraction:.0%} cloud-free"
                 + ("  [SIMULATED]" if scene.simulated else ""), fontsize=9,
                 color="crimson" if scene.simulated else "black")
    if detections or columns:
        ax.legend(fontsize=7, loc="lower right", framealpha=0.7)
    return fig


def overview_image(scene: Scene, aoi: AOI, detections: list[Detection], columns: list[Column], path: str | Path, *,
                   title: str) -> Path:
    return _save(overview_figure(scene, aoi, detections, columns, title=title), Path(path), dpi=110)
