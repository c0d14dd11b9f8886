"""Notebook review of a run: everything the notebooks call lives here, so the notebooks hold no logic.

    session = open_run("basewatch-data")            # or open_run(DATA_DIR, "20261126T...")
    session.time_series("khmeimim")                 # matplotlib Figure
    session.alerts_view()                           # alerts with their before/after chips (HTML in Jupyter)
    grid = session.detection_grid("khmeimim")       # numbered chips of one acquisition's detections
    session.mark_right(grid.ids[0]); session.mark_wrong(grid.ids[3])
    session.add_missed("khmeimim", grid.acquisition_id, lon=35.95, lat=35.41, cls="large_aircraft")
    session.save_labels()                           # -> <data-dir>/labels/<aoi>__<acquisition>.tif + .labels.geojson

Verdicts are kept in the store's SQLite file (tables ``review_verdicts`` and ``review_missed``), so a notebook can be
closed and reopened without losing work. ``save_labels`` writes, per reviewed acquisition, a copy of the scene
GeoTIFF and an Objects GeoJSON of what is really there: detections marked right, detections not reviewed (unless
``include_unreviewed=False``), and missed objects the analyst added; detections marked wrong are left out. That is
the ``<scene>.tif`` + ``<scene>.labels.geojson`` pairing ``basewatch train --labels <data-dir>/labels`` reads.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipeline.atomic import atomic_write
from pipeline.chips import CLASS_COLOURS, true_colour, window_around
from pipeline.config import BasewatchConfig, load_aoi
from pipeline.errors import BasewatchError, ConfigError, StoreError
from pipeline.georef import lonlat_to_map, map_to_lonlat, pixel_to_map
from pipeline.geotiff import read_scene
from pipeline.objects import feature_collection, object_feature, write_geojson
from pipeline.plots import time_series_figure
from pipeline.report import alert_record, resolve_run_id, slug, sort_alerts
from pipeline.store import STORE_FILENAME, RunRecord, Store, open_store
from pipeline.types import OBJECT_CLASSES, Alert, Detection, MapObject, Scene

log = logging.getLogger(__name__)

LABELS_DIR = "labels"
LABEL_SUFFIX = ".labels.geojson"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS review_verdicts (
    detection_id TEXT PRIMARY KEY, aoi TEXT NOT NULL, acquisition_id TEXT NOT NULL, verdict TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS review_missed (
    id INTEGER PRIMARY KEY AUTOINCREMENT, aoi TEXT NOT NULL, acquisition_id TEXT NOT NULL, object TEXT NOT NULL,
    added TEXT NOT NULL
)
"""


@dataclass
class DetectionGrid:
    """The detections shown in a grid, in display order (chip number n is ``ids[n]``)."""

    aoi: str
    acquisition_id: str
    ids: list[str]
    figure: Figure

    def _repr_png_(self) -> bytes:
        return _png(self.figure)


@dataclass
class HTMLView:
    """Rich HTML for Jupyter; plain text elsewhere."""

    html: str
    text: str

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.text


@dataclass
class ReviewSession:
    data_dir: Path
    store: Store
    run: RunRecord
    report_dir: Path | None
    config: BasewatchConfig = field(default_factory=BasewatchConfig)

    # ------------------------------------------------------------ reading

    @property
    def aois(self) -> list[str]:
        return list(self.run.aois)

    @property
    def model(self) -> str:
        return self.run.model

    def _model_for(self, aoi: str) -> str | None:
        return self.run.model if self.run.model in self.store.models(aoi) else None

    def observations(self, aoi: str):
        return [o for o in self.store.observations(aoi, self._model_for(aoi))
                if o.acquisition.datetime.date() <= self.run.end]

    def acquisitions(self, aoi: str) -> list[str]:
        return [o.acquisition.id for o in self.observations(aoi)]

    def latest_clear(self, aoi: str) -> str:
        """The newest acquisition of ``aoi`` that is mostly cloud-free (else the newest)."""
        obs = self.observations(aoi)
        if not obs:
            raise StoreError(f"no acquisition of {aoi!r} in run {self.run.id}")
        clear = [o for o in obs if o.valid_fraction >= self.config.diff.min_zone_valid]
        return (clear or obs)[-1].acquisition.id

    def scene(self, aoi: str, acquisition_id: str | None = None) -> Scene:
        acquisition_id = acquisition_id or self.latest_clear(aoi)
        rec = self.store.acquisition(aoi, acquisition_id)
        if rec is None:
            raise StoreError(f"no acquisition {acquisition_id!r} of {aoi!r} in {self.store.path}")
        return read_scene(rec.scene_path)

    def detections(self, aoi: str, acquisition_id: str | None = None, cls: str | None = None) -> list[Detection]:
        acquisition_id = acquisition_id or self.latest_clear(aoi)
        dets = self.store.detections(aoi, acquisition_id, self._model_for(aoi))
        return [d for d in dets if cls is None or d.cls == cls]

    def alerts(self) -> list[Alert]:
        return sort_alerts(self.store.run_alerts(self.run.id))

    def ground_truth(self, aoi: str, acquisition_id: str | None = None) -> list[MapObject] | None:
        """What is really in the scene, where known: re-rendered from the scenario for a simulated run (same seed,
        same pixels), else a ``<scene>.truth.geojson`` next to the scene GeoTIFF. None when unknown."""
        acquisition_id = acquisition_id or self.latest_clear(aoi)
        rec = self.store.acquisition(aoi, acquisition_id)
        if rec is None:
            return None
        truth_file = Path(rec.scene_path).with_name(Path(rec.scene_path).stem + ".truth.geojson")
        if truth_file.exists():
            from pipeline.objects import read_objects

            return read_objects(truth_file, crs=read_scene(rec.scene_path).crs)
        if not self.run.simulated:
            return None
        try:
            from pipeline.config import load_scenario
            from pipeline.sources.simulated import SimulatedSource

            source = SimulatedSource(load_scenario(self.config.scenario))
            rendered = source.truth(rec.acquisition, load_aoi(aoi))
            stored = read_scene(rec.scene_path)
            if rendered.scene.bands.shape != stored.bands.shape or not np.allclose(
                    rendered.scene.bands[:, stored.valid], stored.bands[:, stored.valid], atol=1e-4):
                log.warning("ground truth of %s/%s: re-rendering %s does not give the stored pixels (another "
                            "scenario or simulator version); no truth shown", aoi, acquisition_id, self.config.scenario)
                return None
            return list(rendered.truth)
        except (BasewatchError, ImportError) as exc:
            log.warning("no ground truth for %s/%s: %s", aoi, acquisition_id, exc)
            return None

    # ------------------------------------------------------------ figures

    def time_series(self, aoi: str) -> Figure:
        """Counts per acquisition with the baseline band, cloudy dates and this run's alerts."""
        title = _title(aoi)
        return time_series_figure(self.observations(aoi), title=title,
                                  alerts=[a for a in self.alerts() if a.aoi == aoi],
                                  window_days=self.config.diff.baseline_window_days,
                                  min_history=self.config.diff.min_history,
                                  min_valid=self.config.diff.min_zone_valid, simulated=self.run.simulated)

    def scene_figure(self, aoi: str, acquisition_id: str | None = None, *, truth: bool = True,
                     window: tuple[float, float, float, float] | None = None) -> Figure:
        """The scene in true colour with detections (coloured boxes) and, where known, ground truth (white rings).

        ``window`` = (minx, miny, maxx, maxy) in the scene CRS zooms in."""
        acquisition_id = acquisition_id or self.latest_clear(aoi)
        scene = self.scene(aoi, acquisition_id)
        dets = self.detections(aoi, acquisition_id)
        objs = self.ground_truth(aoi, acquisition_id) if truth else None
        minx, miny, maxx, maxy = scene.grid.bounds
        fig = Figure(figsize=(8, 8 * scene.height / max(scene.width, 1) + 0.5), layout="constrained")
        ax = fig.add_subplot()
        ax.imshow(true_colour(scene), extent=(minx, maxx, miny, maxy), interpolation="nearest")
        if objs:
            ax.scatter([o.x for o in objs], [o.y for o in objs], s=70, facecolors="none", edgecolors="white",
                       linewidths=0.8, label=f"ground truth ({len(objs)})")
        for cls, colour in CLASS_COLOURS.items():
            pts = [d for d in dets if d.cls == cls]
            if pts:
                ax.scatter([d.x for d in pts], [d.y for d in pts], s=22, marker="s", facecolors="none",
                           edgecolors=[np.array(colour) / 255], linewidths=1.0,
                           label=f"detected {cls.replace('_', ' ')} ({len(pts)})")
        if window:  # clamped to the scene, so a zoom near the edge shows no blank band
            ax.set_xlim(max(window[0], minx), min(window[2], maxx))
            ax.set_ylim(max(window[1], miny), min(window[3], maxy))
        ax.set_xticks([])
        ax.set_yticks([])
        acq = scene.acquisition
        ax.set_title(f"{_title(aoi)} — {acq.datetime:%Y-%m-%d %H:%M} UTC, {acq.sensor}"
                     + (" [SIMULATED]" if scene.simulated else ""), fontsize=9)
        ax.legend(fontsize=7, loc="lower right", framealpha=0.7)
        return fig

    def detection_grid(self, aoi: str, acquisition_id: str | None = None, *, cls: str | None = None,
                       limit: int = 24, size_px: int = 24, columns: int = 6) -> DetectionGrid:
        """Numbered chips of detections to review, highest score first; the border shows the verdict so far
        (green right, red wrong, grey not reviewed)."""
        acquisition_id = acquisition_id or self.latest_clear(aoi)
        scene = self.scene(aoi, acquisition_id)
        rgb = true_colour(scene)
        dets = sorted(self.detections(aoi, acquisition_id, cls), key=lambda d: -(d.score or 0.0))[:limit]
        verdicts = self.verdicts()
        rows = max(1, -(-len(dets) // columns))
        fig = Figure(figsize=(columns * 1.6, rows * 1.8 + 0.4), layout="constrained")
        fig.suptitle(f"{_title(aoi)} {acquisition_id}: {len(dets)} detection(s)"
                     + (" [SIMULATED]" if scene.simulated else ""), fontsize=9)
        if not dets:
            fig.add_subplot().text(0.5, 0.5, "no detections", ha="center", va="center")
        for n, d in enumerate(dets):
            ax = fig.add_subplot(rows, columns, n + 1)
            w = window_around(scene.grid, d.x, d.y, size_px)
            ax.imshow(rgb[w.row0:w.row0 + w.rows, w.col0:w.col0 + w.cols], interpolation="nearest")
            c, r = w.pixel_of(d.x, d.y)
            ax.plot([c - 0.5], [r - 0.5], marker="+", color=np.array(CLASS_COLOURS.get(d.cls, (255, 255, 255))) / 255,
                    markersize=10)
            verdict = verdicts.get(d.id)
            edge = {"right": "limegreen", "wrong": "red"}.get(verdict, "0.6")
            for spine in ax.spines.values():
                spine.set_edgecolor(edge)
                spine.set_linewidth(3 if verdict else 1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"#{n} {d.cls.replace('_', ' ')} {d.score or 0:.2f}", fontsize=7)
        return DetectionGrid(aoi=aoi, acquisition_id=acquisition_id, ids=[d.id for d in dets], figure=fig)

    def alerts_view(self) -> HTMLView:
        """This run's alerts, most severe first, with before/after chips from the report (embedded)."""
        chips = self._report_chips()
        parts, lines = [], []
        if self.run.simulated:
            parts.append('<p style="background:#b3261e;color:#fff;padding:6px;font-weight:bold">SIMULATED scenes: '
                         "not evidence about real sites</p>")
        for a in self.alerts():
            rec = alert_record(a)
            lines.append(f"[{a.severity}] {a.kind} at {a.aoi} conf {a.confidence:.2f} first seen "
                         f"{a.first_seen:%Y-%m-%d} baseline {a.baseline} current {a.current}")
            imgs = "".join(
                f'<figure style="display:inline-block;margin:2px"><img src="{_data_uri(p)}" width="220">'
                f"<figcaption>{html.escape(p.name)}</figcaption></figure>"
                for p in chips.get(a.id, []) if p.exists())
            parts.append(
                f"<div><b>{html.escape(a.severity.upper())}</b> <code>{html.escape(a.kind)}</code> at "
                f"<b>{html.escape(_title(a.aoi))}</b> — confidence {a.confidence:.2f}, first seen "
                f"{a.first_seen:%Y-%m-%d}, last seen {a.last_seen:%Y-%m-%d}<br>baseline "
                f"<code>{html.escape(json.dumps(rec['baseline'], sort_keys=True))}</code> current "
                f"<code>{html.escape(json.dumps(rec['current'], sort_keys=True))}</code><br>{imgs}</div>")
        if not lines:
            parts.append("<p>This run raised or updated no alert.</p>")
        return HTMLView("\n".join(parts), "\n".join(lines) or "no alerts")

    def ensure_report(self) -> Path:
        """The run's report folder, written from the store first if the run had none (e.g. --no-report)."""
        if self.report_dir is None or not (self.report_dir / "alerts.json").exists():
            from pipeline.report import render_report

            self.report_dir = render_report(self.store, self.run.id, self.data_dir)
        return self.report_dir

    def _report_chips(self) -> dict[str, list[Path]]:
        if not self.report_dir:
            return {}
        try:
            doc = json.loads((self.report_dir / "alerts.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {a["id"]: [self.report_dir / p for p in a.get("evidence", [])] for a in doc.get("alerts", [])}

    def _repr_html_(self) -> str:
        sim = " <b style='color:#b3261e'>SIMULATED</b>" if self.run.simulated else ""
        rows = "".join(f"<tr><td>{html.escape(a)}</td><td>{len(self.observations(a))}</td></tr>" for a in self.aois)
        return (f"<p>run <code>{html.escape(self.run.id)}</code>{sim}: source {html.escape(self.run.source)}, model "
                f"{html.escape(self.run.model)}, {self.run.start} to {self.run.end}, {len(self.alerts())} alert(s); "
                f"report: <code>{html.escape(str(self.report_dir))}</code></p><table><tr><th>AOI</th>"
                f"<th>acquisitions</th></tr>{rows}</table>")

    # ------------------------------------------------------------ verdicts

    def _db(self):
        return self.store.connection()

    def _ensure_tables(self) -> None:
        with self._db() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    def mark(self, detection_id: str, correct: bool) -> None:
        """Record that a detection is right (``correct=True``) or wrong; a later call overrides an earlier one."""
        found = self.store.detections_by_id([detection_id])
        if not found:
            raise StoreError(f"no detection {detection_id!r} in {self.store.path}; take ids from detection_grid().ids")
        aoi, acq = self._locate(detection_id)
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO review_verdicts (detection_id, aoi, acquisition_id, verdict, updated) "
                       "VALUES (?, ?, ?, ?, ?)",
                       (detection_id, aoi, acq, "right" if correct else "wrong", datetime.now(UTC).isoformat()))

    def mark_right(self, *detection_ids: str) -> None:
        for d in detection_ids:
            self.mark(d, True)

    def mark_wrong(self, *detection_ids: str) -> None:
        for d in detection_ids:
            self.mark(d, False)

    def _locate(self, detection_id: str) -> tuple[str, str]:
        with self._db() as db:
            row = db.execute("SELECT aoi, acquisition_id FROM detections WHERE id = ?", (detection_id,)).fetchone()
        return row[0], row[1]

    def add_missed(self, aoi: str, acquisition_id: str, *, cls: str, lon: float | None = None,
                   lat: float | None = None, row: float | None = None, col: float | None = None, **props) -> MapObject:
        """Add an object the detector missed, by lon/lat or by scene pixel (row, col); ``props`` may carry
        type, length_m, width_m, heading_deg, moving, speed_mps."""
        if cls not in OBJECT_CLASSES:
            raise ConfigError(f"class {cls!r} is not one of {', '.join(OBJECT_CLASSES)}")
        rec = self.store.acquisition(aoi, acquisition_id)
        if rec is None:
            raise StoreError(f"no acquisition {acquisition_id!r} of {aoi!r} in {self.store.path}")
        scene = read_scene(rec.scene_path)
        if lon is not None and lat is not None:
            x, y = lonlat_to_map(scene.crs, lon, lat)
        elif row is not None and col is not None:
            x, y = pixel_to_map(scene.transform, row, col)
            lon, lat = map_to_lonlat(scene.crs, x, y)
        else:
            raise ConfigError("add_missed needs lon= and lat=, or row= and col= (scene pixels)")
        minx, miny, maxx, maxy = scene.grid.bounds
        if not (minx <= x <= maxx and miny <= y <= maxy):
            raise ConfigError(f"({lon:.5f}, {lat:.5f}) is outside the scene of {acquisition_id}")
        obj = MapObject(cls=cls, x=x, y=y, lon=lon, lat=lat, **props)
        with self._db() as db:
            db.execute("INSERT INTO review_missed (aoi, acquisition_id, object, added) VALUES (?, ?, ?, ?)",
                       (aoi, acquisition_id, json.dumps(object_feature(obj)), datetime.now(UTC).isoformat()))
        return obj

    def verdicts(self) -> dict[str, str]:
        """detection id -> 'right' / 'wrong'."""
        with self._db() as db:
            return {r[0]: r[1] for r in db.execute("SELECT detection_id, verdict FROM review_verdicts")}

    def missed(self, aoi: str | None = None) -> list[tuple[str, str, dict]]:
        sql, args = "SELECT aoi, acquisition_id, object FROM review_missed", ()
        if aoi:
            sql, args = sql + " WHERE aoi = ?", (aoi,)
        with self._db() as db:
            return [(r[0], r[1], json.loads(r[2])) for r in db.execute(sql + " ORDER BY id", args)]

    def save_labels(self, include_unreviewed: bool = True) -> list[Path]:
        """Write a labels pair per reviewed acquisition under ``<data-dir>/labels/``; returns the GeoJSON paths."""
        with self._db() as db:
            reviewed = {(r[0], r[1]) for r in db.execute("SELECT DISTINCT aoi, acquisition_id FROM review_verdicts")}
            reviewed |= {(r[0], r[1]) for r in db.execute("SELECT DISTINCT aoi, acquisition_id FROM review_missed")}
        verdicts = self.verdicts()
        out_dir = self.data_dir / LABELS_DIR
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for aoi, acq in sorted(reviewed):
            rec = self.store.acquisition(aoi, acq)
            if rec is None:
                continue
            features = []
            for d in self.store.detections(aoi, acq):
                verdict = verdicts.get(d.id, "unreviewed")
                if verdict == "wrong" or (verdict == "unreviewed" and not include_unreviewed):
                    continue
                feat = object_feature(d, verdict=verdict, detection_id=d.id)
                feat["properties"].pop("score", None)
                feat["properties"].pop("id", None)
                features.append(feat)
            features += [dict(f, properties={**f["properties"], "verdict": "missed"})
                         for _, q, f in self.missed(aoi) if q == acq]
            stem = f"{slug(aoi)}__{slug(acq)}"
            tif = out_dir / f"{stem}.tif"
            _copy(Path(rec.scene_path), tif)
            path = write_geojson(feature_collection(features, simulated=bool(rec.acquisition.simulated),
                                                    scene=tif.name, aoi=aoi, acquisition_id=acq,
                                                    reviewed_run=self.run.id), out_dir / f"{stem}{LABEL_SUFFIX}")
            written.append(path)
        log.info("labels: %d reviewed scene(s) written to %s", len(written), out_dir)
        return written

    def close(self) -> None:
        self.store.close()


def open_run(data_dir: str | Path = "basewatch-data", run_id: str | None = "latest") -> ReviewSession:
    """Open a run (by id, or the latest) of a data directory for review."""
    data_dir = Path(data_dir)
    if not (data_dir / STORE_FILENAME).exists():
        raise StoreError(f"{data_dir}: no basewatch store here ({STORE_FILENAME}); run `basewatch run` first or set "
                         "the data directory")
    store = open_store(data_dir)
    run = store.run(resolve_run_id(store, run_id))
    try:
        config = BasewatchConfig.model_validate(run.config)
    except Exception:  # noqa: BLE001 - an old run's config may not validate with today's models
        config = BasewatchConfig()
    report_dir = data_dir / "reports" / run.id
    session = ReviewSession(data_dir=data_dir, store=store, run=run,
                            report_dir=report_dir if report_dir.is_dir() else None, config=config)
    session._ensure_tables()
    return session


def _title(aoi: str) -> str:
    try:
        return load_aoi(aoi).title
    except BasewatchError:
        return aoi


def _copy(src: Path, dst: Path) -> None:
    if dst.exists() and dst.stat().st_size == src.stat().st_size and dst.stat().st_mtime >= src.stat().st_mtime:
        return
    with atomic_write(dst) as tmp:
        shutil.copyfile(src, tmp)


def _png(fig: Figure) -> bytes:
    import io

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
