"""Windowed inference of the learned detector over rasters of any size, and the choice of detector.

Why windows: a 10980 x 10980 tile is 1.9 GB of float32 bands; reading it whole would make memory grow with the
tile. Windows (``window`` px, ``overlap`` px shared with each neighbour) are read one batch at a time, either from a
GeoTIFF with rasterio windows (``detect_path``) or sliced from an in-memory Scene (``detect``). Each window *owns*
only its core (the overlap split half and half), so an object near a seam is kept by exactly one window; a
class-wise ``batched_nms`` over the kept boxes removes any remaining double peak.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine
from pyproj import Transformer
from rasterio.windows import Window as RioWindow

from pipeline.config import DetectorConfig, resolve_path
from pipeline.detector import Detector
from pipeline.errors import ModelError, SceneError
from pipeline.geotiff import CONVERT_HINT
from pipeline.heap import retain_freed_memory
from pipeline.types import BAND_NAMES, Detection, MapObject, Scene

log = logging.getLogger(__name__)

MULTIPLE = 8  # the network needs H and W divisible by 8 (space-to-depth 2 x two stride-2 levels)
NMS_IOU = 0.2
MIN_BOX_PX = {"large_aircraft": 3.0, "vehicle": 1.5, "small_aircraft": 3.0}
"""Smallest NMS box side per class (pixels). small_aircraft as large_aircraft: a fighter peak on a transport's wing
must overlap the transport's box enough to be suppressed; parked fighters stand 3.5 px apart."""
NMS_GROUP = {"small_aircraft": "large_aircraft"}
"""Classes suppressed together: one blob on an apron is a transport or a fighter, never both (a fighter pair also
raises a weaker large_aircraft peak, and a transport's wingtips weaker small_aircraft ones)."""


@dataclass(frozen=True)
class Window:
    """Integer pixel bounds of one inference window plus the core region it owns (half-open, raster pixels)."""

    row_off: int
    col_off: int
    height: int
    width: int
    core_row0: int
    core_row1: int
    core_col0: int
    core_col1: int

    def owns(self, row: float, col: float) -> bool:
        return self.core_row0 <= row < self.core_row1 and self.core_col0 <= col < self.core_col1


def _starts(length: int, size: int, step: int) -> list[int]:
    if length <= size:
        return [0]
    starts = list(range(0, length - size, step))
    starts.append(length - size)
    return sorted(set(starts))


def grid_windows(height: int, width: int, size: int, overlap: int) -> list[Window]:
    """Overlapping windows covering the raster; the last row/column is shifted back to stay inside it."""
    if overlap >= size:
        raise SceneError(f"detector.overlap ({overlap}) must be smaller than detector.window ({size})")
    step = size - overlap
    rows, cols = _starts(height, size, step), _starts(width, size, step)

    def cores(starts: list[int], length: int) -> list[tuple[int, int]]:
        out = []
        for k, s in enumerate(starts):
            lo = 0 if k == 0 else (s + min(starts[k - 1] + size, length)) // 2
            hi = length if k == len(starts) - 1 else (starts[k + 1] + min(s + size, length)) // 2
            out.append((lo, hi))
        return out

    rc, cc = cores(rows, height), cores(cols, width)
    return [
        Window(r, c, min(size, height - r), min(size, width - c), r0, r1, c0, c1)
        for r, (r0, r1) in zip(rows, rc, strict=True)
        for c, (c0, c1) in zip(cols, cc, strict=True)
    ]


class ArraySource:
    """Windows sliced from an in-memory Scene (the path a run uses)."""

    def __init__(self, scene: Scene, bands: tuple[str, ...] = BAND_NAMES):
        missing = [b for b in bands if b not in scene.band_names]
        if missing:
            raise SceneError(f"scene lacks bands {missing}; the detector needs {list(bands)}")
        self.scene = scene
        self.index = [scene.band_names.index(b) for b in bands]
        self.height, self.width = scene.height, scene.width
        self.transform, self.crs = scene.transform, scene.crs

    def read(self, w: Window) -> tuple[np.ndarray, np.ndarray]:
        rs, cs = slice(w.row_off, w.row_off + w.height), slice(w.col_off, w.col_off + w.width)
        return self.scene.bands[self.index, rs, cs].astype(np.float32, copy=False), self.scene.valid[rs, cs]


class RasterSource:
    """Windows read from an interchange GeoTIFF with rasterio (never the whole raster at once)."""

    def __init__(self, path: str | Path, bands: tuple[str, ...] = BAND_NAMES):
        self.path = Path(path)
        if not self.path.exists():
            raise SceneError(f"{self.path}: file not found")
        try:
            self.src = rasterio.open(self.path)
        except rasterio.errors.RasterioIOError as exc:
            raise SceneError(f"{self.path}: not a readable GeoTIFF ({exc})") from None
        src = self.src
        if src.crs is None or not src.crs.is_projected:
            raise SceneError(f"{self.path}: needs a projected CRS (UTM, 10 m pixels); reproject it first, or write "
                             f"an interchange copy on its UTM zone: {CONVERT_HINT}")
        desc = [d or "" for d in src.descriptions]
        missing = [b for b in bands if b not in desc]
        if missing:
            raise SceneError(f"{self.path}: band descriptions {desc} lack {missing}; set them to {list(bands)}, or "
                             f"write an interchange copy: {CONVERT_HINT}")
        self.indexes = [desc.index(b) + 1 for b in bands]
        self.valid_index = desc.index("valid") + 1 if "valid" in desc else None
        tags = src.tags()
        self.is_int = np.issubdtype(np.dtype(src.dtypes[self.indexes[0] - 1]), np.integer)
        if self.is_int and "SCALE" not in tags:
            raise SceneError(f"{self.path}: integer bands need tags SCALE and OFFSET (reflectance = DN*SCALE+OFFSET), "
                             f"or an interchange copy: {CONVERT_HINT}")
        self.scale = float(tags.get("SCALE", 1.0))
        self.offset = float(tags.get("OFFSET", 0.0))
        self.nodata = src.nodata
        self.height, self.width = src.height, src.width
        self.transform, self.crs = src.transform, src.crs.to_string()
        self._strip_key: tuple[int, int, int, int] | None = None
        self._strip_data: tuple[np.ndarray, np.ndarray] | None = None

    STRIP_COLS = 4096  # columns read at once: ~36 MB of float32 for a 544-row strip, whatever the raster size

    def read(self, w: Window) -> tuple[np.ndarray, np.ndarray]:
        """One window, sliced from a strip of its rows that also holds the next windows of the row.

        Windows come row by row; reading several at once decodes each GeoTIFF block once and skips per-window
        GDAL overhead (about a third of the read time). Strips are capped at STRIP_COLS so memory stays flat."""
        key = self._strip_key
        if key is None or key[:2] != (w.row_off, w.height) or not key[2] <= w.col_off <= key[3] - w.width:
            self._strip_data = None  # drop the previous strip before reading the next
            c1 = min(self.width, w.col_off + max(self.STRIP_COLS, w.width))
            self._strip_data = self._read(Window(w.row_off, w.col_off, w.height, c1 - w.col_off, 0, 0, 0, 0))
            key = self._strip_key = (w.row_off, w.height, w.col_off, c1)
        bands, valid = self._strip_data
        cs = slice(w.col_off - key[2], w.col_off - key[2] + w.width)
        return bands[:, :, cs], valid[:, cs]

    def _read(self, w: Window) -> tuple[np.ndarray, np.ndarray]:
        win = RioWindow(w.col_off, w.row_off, w.width, w.height)
        raw = self.src.read(self.indexes, window=win)
        if self.is_int:
            bad = np.zeros(raw.shape[1:], bool) if self.nodata is None else np.any(raw == self.nodata, axis=0)
            bands = raw.astype(np.float32) * self.scale + self.offset
        else:
            bands = raw.astype(np.float32, copy=False)
            bad = np.any(~np.isfinite(bands), axis=0)
            if self.nodata is not None and np.isfinite(self.nodata):
                bad |= np.any(raw == self.nodata, axis=0)
        valid = ~bad
        if self.valid_index is not None:
            valid &= self.src.read(self.valid_index, window=win) > 0.5
        if not self.is_int and bad.any():  # a copy only when there is something to clean
            bands = np.nan_to_num(bands, nan=0.0, posinf=0.0, neginf=0.0)
        return bands, valid

    def close(self) -> None:
        self.src.close()


def _pad_to(bands: np.ndarray, valid: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    c, bh, bw = bands.shape
    if (bh, bw) == (h, w):
        return bands, valid
    out = np.zeros((c, h, w), np.float32)
    out[:, :bh, :bw] = bands
    v = np.zeros((h, w), bool)
    v[:bh, :bw] = valid
    return out, v


def set_threads(threads: int) -> int:
    """Torch CPU threads: the configured number, or every core when 0."""
    n = threads if threads > 0 else (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


@dataclass(frozen=True)
class ColumnDetections:
    """What the column stage gets from one scene: the detections, the faint candidates that may extend a column, and
    the indices of detections whose heading it should not trust (columns.unsure_heading_deg)."""

    detections: list[Detection]
    candidates: list[Detection]
    unsure: frozenset[int] = frozenset()


class LearnedDetector:
    """The committed CenterNet behind the Detector interface (windowed, batched, valid-mask aware)."""

    name = "learned"

    def __init__(self, cfg: DetectorConfig | None = None, weights: str | Path | None = None):
        from models.centernet import fold_batchnorm, fold_derived, fold_stem
        from models.checkpoint import load_model
        from models.device import resolve_device

        self.cfg = cfg or DetectorConfig()
        self.weights = resolve_path(weights or self.cfg.weights)
        model, meta = load_model(self.weights)
        self.meta = meta
        self.device = resolve_device(self.cfg.device)
        self.model = fold_derived(fold_stem(fold_batchnorm(model))).to(self.device, memory_format=torch.channels_last)
        self.model.norm.neighbourhood = self.cfg.norm_neighbourhood
        if self.cfg.precision == "bfloat16" and self.device.type == "cpu" and not _native_bf16():
            log.warning("detector.precision bfloat16: this CPU has no native bfloat16 (AVX-512 BF16 or AMX), so it "
                        "is emulated and slower than float32 here")
        self.classes = tuple(model.spec.classes)
        self.stride = model.spec.stride
        self.heading_classes = set(meta.get("heading_classes", ["vehicle"]))
        self.version = f"{model.spec.version}@{meta.get('weights_id', 'unknown')}"
        self.stage_seconds: dict[str, float] = {}
        """Seconds the last scene spent in each stage (network, decode, verifier, heading network): what a
        scene's content costs beyond the network (benchmarks report it)."""
        self.heading_net = None
        if self.cfg.heading_weights and "vehicle" in self.classes:
            from models.heading_net import HeadingRefiner

            self.heading_net = HeadingRefiner(resolve_path(self.cfg.heading_weights), self.device)
            self.version += f"+{self.heading_net.model_id}"
        self.thresholds = class_thresholds(self.cfg, meta, self.classes)
        self.verifiers: dict[int, object] = {}  # class index -> models.verify_net.Verifier
        self.verifier_floors: dict[int, float] = {}  # class index -> lowest detector score shown to its verifier
        for weights, threshold, floor in (
                (self.cfg.verifier_weights, self.cfg.verifier_threshold, None),
                (self.cfg.vehicle_verifier_weights, self.cfg.vehicle_verifier_threshold,
                 self.cfg.vehicle_verifier_floor)):
            if weights:
                self._add_verifier(weights, threshold, floor)
        self.faint_thresholds: dict[int, tuple[float, float]] = {}
        """class index -> (lowest detector score, verifier probability that keeps it) of peaks below the verifier's
        floor that it is shown as well (detector.vehicle_verifier_faint_floor)."""
        if self.cfg.vehicle_verifier_faint_floor is not None:
            self._add_faint_floor(self.cfg.vehicle_verifier_faint_floor, self.cfg.vehicle_verifier_faint_threshold)
        set_threads(self.cfg.threads)
        if self.device.type == "cpu":
            retain_freed_memory()

    @property
    def model_id(self) -> str:
        return f"{self.name}-{self.version}"

    def _add_verifier(self, weights: str, threshold: float | None, floor: float | str | None) -> None:
        from models.verify_net import Verifier

        verifier = Verifier(resolve_path(weights), self.device)
        if verifier.cls not in self.classes:
            raise ModelError(f"verifier {weights} checks {verifier.cls!r}, which the detector {self.weights.name} "
                             f"does not report ({', '.join(self.classes)})")
        i = self.classes.index(verifier.cls)
        if i in self.verifiers:
            raise ModelError(f"two verifiers check {verifier.cls!r}: set only one of detector.verifier_weights and "
                             "detector.vehicle_verifier_weights for it")
        self.verifiers[i] = verifier
        self.verifier_floors[i] = (verifier.floor if floor is None else self.thresholds[i] if floor == "detector"
                                   else float(floor))
        self.version += f"+{verifier.model_id}"
        if floor is not None:
            self.version += f">={self.verifier_floors[i]:g}"  # another floor, other detections
        self.thresholds[i] = threshold if threshold is not None else verifier.threshold

    def _add_faint_floor(self, floor: float, threshold: float) -> None:
        i = self.classes.index("vehicle") if "vehicle" in self.classes else None
        if i is None or i not in self.verifiers:
            raise ModelError("detector.vehicle_verifier_faint_floor needs detector.vehicle_verifier_weights (the "
                             "verifier that judges the fainter peaks)")
        if floor >= self.verifier_floors[i]:
            return  # nothing below the verifier's own floor: the same detections
        self.faint_thresholds[i] = (float(floor), float(threshold))
        self.version += f"~{floor:g}@{threshold:g}"  # other detections

    def _shown_from(self, i: int) -> float:
        """Lowest detector score of class ``i`` shown to its verifier: its floor, or the fainter floor below it."""
        return self.faint_thresholds[i][0] if i in self.faint_thresholds else self.verifier_floors[i]

    # ------------------------------------------------------------------ public API
    def detect(self, scene: Scene) -> list[Detection]:
        """Detect in an in-memory Scene."""
        return self._run(ArraySource(scene))[0]

    def detect_with_candidates(self, scene: Scene, unsure_heading_deg: float = 0.0) -> ColumnDetections:
        """Detections, candidates and unsure headings for the column stage. Candidates are moving-vehicle peaks
        scoring between ``column_candidate_score`` and the vehicle threshold: not detections; the column stage
        admits the ones that extend a column (pipeline/columns.py ``admit_candidates``). With the heading network
        and ``unsure_heading_deg`` > 0, detections whose network heading differs from the detector's own by more
        than that are listed as unsure (columns.unsure_heading_deg)."""
        from pipeline.columns import angle_diff

        strong, weak, own = self._run(ArraySource(scene), candidates=True)
        unsure: frozenset[int] = frozenset()
        if self.heading_net is not None and unsure_heading_deg > 0:
            unsure = frozenset(i for i, (d, h) in enumerate(zip(strong, own, strict=True))
                               if d.cls == "vehicle" and d.moving is not False and d.heading_deg is not None
                               and angle_diff(d.heading_deg, h) > unsure_heading_deg)
        return ColumnDetections(strong, weak, unsure)

    def detect_path(self, path: str | Path, progress: Callable[[int, int], None] | None = None) -> list[Detection]:
        """Detect in a GeoTIFF read window by window (memory stays flat however large the raster)."""
        src = RasterSource(path)
        try:
            with rasterio.Env(GDAL_CACHEMAX=128):
                return self._run(src, progress)[0]
        finally:
            src.close()

    # ------------------------------------------------------------------ internals
    def _batches(self, source, windows: list[Window]) -> Iterator[tuple[list[Window], np.ndarray, np.ndarray]]:
        size = self.cfg.window
        bs = self.cfg.batch_size
        for k in range(0, len(windows), bs):
            group = windows[k : k + bs]
            h = max(w.height for w in group)
            w_ = max(w.width for w in group)
            h, w_ = -(-h // MULTIPLE) * MULTIPLE, -(-w_ // MULTIPLE) * MULTIPLE
            h, w_ = min(h, -(-size // MULTIPLE) * MULTIPLE), min(w_, -(-size // MULTIPLE) * MULTIPLE)
            arrays = [_pad_to(*source.read(win), h, w_) for win in group]
            yield group, np.stack([a[0] for a in arrays]), np.stack([a[1] for a in arrays])

    def _floors(self, candidates: bool) -> list[float]:
        """Lowest score kept per class: the vehicle threshold, or the candidate score when candidates are wanted."""
        floors = list(self.thresholds)
        for i in self.verifiers:  # peaks from the lowest score shown to a verifier up are kept for it
            floors[i] = self._shown_from(i)
        low = self.cfg.column_candidate_score
        if candidates and low is not None and "vehicle" in self.classes:
            i = self.classes.index("vehicle")
            floors[i] = min(floors[i], low)
        return floors

    def _run(self, source, progress: Callable[[int, int], None] | None = None,
             candidates: bool = False) -> tuple[list[Detection], list[Detection], list[float]]:
        """(detections, candidates, the detector's own heading of each detection), best score first; the heading
        network may have replaced a detection's heading, so its own is kept beside it."""
        from models.targets import decode
        from models.tta import averaged_forward, heading_over_views

        windows = grid_windows(source.height, source.width, self.cfg.window, self.cfg.overlap)
        raw: list[tuple] = []
        floors = self._floors(candidates)
        done = 0
        clock = _StageClock()
        with ThreadPoolExecutor(max_workers=1) as pool, torch.inference_mode():
            it = self._batches(source, windows)
            future = pool.submit(next, it, None)
            while True:
                item = future.result()
                if item is None:
                    break
                future = pool.submit(next, it, None)  # read the next batch while this one computes
                group, bands, valid = item
                vt = torch.from_numpy(valid).to(self.device)
                x = torch.from_numpy(bands).to(self.device)  # InputNorm writes its channels_last output itself
                with clock("network"), self._arithmetic():
                    out = averaged_forward(self.model, x, vt, self.cfg.tta_views, len(self.classes)).float()
                    images = self._heading_view_images(out, floors)
                    if images:
                        out = heading_over_views(self.model, x, vt, self.cfg.heading_views, len(self.classes),
                                                 out, images).float()
                floor = min(floors)
                with clock("decode"):
                    decoded = decode(out, len(self.classes), floor, self.stride, valid=vt)
                for b, (win, dets) in enumerate(zip(group, decoded, strict=True)):
                    kept = [d for d in dets if d.score >= floors[d.cls_index]
                            and win.owns(d.row + win.row_off, d.col + win.col_off)]
                    with clock("verifier"), self._arithmetic():
                        kept, scores, held = self._verify(bands[b], valid[b], kept, candidates)
                    with clock("heading_network"), self._arithmetic():
                        headings = self._crop_headings(bands[b], valid[b], kept)
                    for d, score, heading, back in zip(kept, scores, headings, held, strict=True):
                        raw.append((d.cls_index, score, d.row + win.row_off, d.col + win.col_off, d.length_m,
                                    d.width_m, heading, d.speed_mps, d.heading_deg, back))
                done += len(group)
                if progress:
                    progress(done, len(windows))
        self.stage_seconds = clock.seconds
        raw = merge_duplicates(raw, self.classes)  # a faint peak beside a confident one is suppressed here
        strong = [r for r in raw if not r[9] and r[1] >= self.thresholds[r[0]]]
        weak = [r for r in raw if r[9] or r[1] < self.thresholds[r[0]]]
        for part in (strong, weak):
            part.sort(key=lambda r: -round(r[1], 4))  # by the score a detection reports
        return (self._georeference(strong, source.transform, source.crs),
                self._georeference(weak, source.transform, source.crs), [r[8] for r in strong])

    def _verify(self, bands: np.ndarray, valid: np.ndarray, dets: list,
                candidates: bool) -> tuple[list, list[float], list[bool]]:
        """(peaks kept, their scores, held back as column candidates) of one window. A verified class's peak is kept
        with the verifier's probability as its score when that reaches the class threshold. Rejected moving-vehicle
        peaks whose detector score reaches ``column_candidate_score`` and whose probability reaches
        ``candidate_verifier_floor`` stay, when candidates are wanted, as column candidates at their detector score
        (two sure trucks must vouch for them); other rejects are dropped."""
        scores = [d.score for d in dets]
        held = [False] * len(dets)
        drop = set()
        low = self.cfg.column_candidate_score
        for i, verifier in self.verifiers.items():  # fainter peaks (column candidates) pass unverified
            floor = self.verifier_floors[i]
            faint_threshold = self.faint_thresholds[i][1] if i in self.faint_thresholds else 1.0
            idx = [k for k, d in enumerate(dets) if d.cls_index == i and d.score >= self._shown_from(i)]
            if not idx:
                continue
            prob = verifier.probabilities(bands, valid, np.array([dets[k].row for k in idx]),
                                          np.array([dets[k].col for k in idx]),
                                          np.array([dets[k].score for k in idx]))
            for k, p in zip(idx, prob, strict=True):
                if p >= (self.thresholds[i] if dets[k].score >= floor else faint_threshold):
                    scores[k] = float(p)
                elif (candidates and verifier.cls == "vehicle" and low is not None and dets[k].score >= low
                      and p >= self.cfg.candidate_verifier_floor):
                    held[k] = True
                else:
                    drop.add(k)
        keep = [k for k in range(len(dets)) if k not in drop]
        return [dets[k] for k in keep], [scores[k] for k in keep], [held[k] for k in keep]

    def _crop_headings(self, bands: np.ndarray, valid: np.ndarray, dets: list) -> list[float]:
        """Each detection's heading: the heading network's reading of a crop around it for moving vehicles when
        detector.heading_weights is set, else the detector's own."""
        headings = [d.heading_deg for d in dets]
        if self.heading_net is None:
            return headings
        vehicle = self.classes.index("vehicle")
        idx = [k for k, d in enumerate(dets) if d.cls_index == vehicle]
        if idx:
            refined = self.heading_net.headings(bands, valid, np.array([dets[k].row for k in idx]),
                                                np.array([dets[k].col for k in idx]))
            for k, h in zip(idx, refined, strict=True):
                headings[k] = float(h)
        return headings

    def _heading_view_images(self, out: torch.Tensor, floors: list[float]) -> list[int]:
        """The windows of this batch whose headings to re-read over flipped views: none unless asked for and not
        already averaged by tta_views or replaced by the heading network; else those with a vehicle peak that could
        be kept (the rest cost nothing)."""
        if (self.cfg.heading_views == 1 or self.cfg.tta_views > 1 or "vehicle" not in self.classes
                or self.heading_net is not None):
            return []
        from models.targets import score_logit

        i = self.classes.index("vehicle")
        floor = score_logit(floors[i])
        if floor is None:
            return list(range(out.shape[0]))
        return torch.nonzero((out[:, i] >= floor).flatten(1).any(dim=1)).flatten().tolist()

    def _arithmetic(self):
        """bfloat16 autocast around the networks when asked: the detector, the verifiers and the heading network
        (convolutions and linear layers in bf16, the rest float32; each returns float32)."""
        if self.cfg.precision == "bfloat16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _georeference(self, raw: list, transform: Affine, crs: str) -> list[Detection]:
        if not raw:
            return []
        arr = np.array([(r[2], r[3]) for r in raw], dtype=np.float64)
        t = transform
        xs = t.a * arr[:, 1] + t.b * arr[:, 0] + t.c
        ys = t.d * arr[:, 1] + t.e * arr[:, 0] + t.f
        lons, lats = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(xs, ys)
        out = []
        for (ci, score, _r, _c, length, width, heading, speed, _own, _held), x, y, lon, lat in zip(
                raw, xs, ys, lons, lats, strict=True):
            cls = self.classes[ci]
            vehicle = cls == "vehicle"
            out.append(MapObject(
                cls=cls, x=float(x), y=float(y), lon=float(lon), lat=float(lat),
                length_m=round(length, 1), width_m=round(width, 1),
                heading_deg=round(heading, 1) if cls in self.heading_classes else None,
                moving=True if vehicle else None,
                speed_mps=round(speed, 1) if vehicle else None,
                score=round(score, 4),
            ))
        return out


class _StageClock:
    """Adds up the wall time spent in named stages (``with clock("name"):``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def _native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 convolutions natively on this CPU (False when torch cannot tell)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def class_thresholds(cfg: DetectorConfig, meta: dict, classes: tuple[str, ...]) -> list[float]:
    """Score threshold per class: the config's class_thresholds, else the checkpoint's calibrated ones, else
    score_threshold. With test-time augmentation too: thresholds calibrated for it on the validation scenes (lower
    for vehicles) cost precision off our simulator (MODEL_CARD, "Test-time augmentation")."""
    chosen = cfg.class_thresholds if cfg.class_thresholds is not None else meta.get("thresholds") or {}
    return [float(chosen.get(c, cfg.score_threshold)) for c in classes]


def merge_duplicates(raw: list[tuple], classes: tuple[str, ...], iou: float = NMS_IOU) -> list[tuple]:
    """Class-wise NMS (aircraft classes together, NMS_GROUP) over boxes of the predicted size (at least a few
    pixels) in raster pixel coordinates."""
    if len(raw) < 2:
        return raw
    from torchvision.ops import batched_nms

    t = torch.tensor([(r[0], r[1], r[2], r[3], r[4]) for r in raw], dtype=torch.float64)
    min_px = torch.tensor([MIN_BOX_PX.get(c, 2.0) for c in classes], dtype=torch.float64)[t[:, 0].long()]
    half = torch.maximum(t[:, 4] / 10.0, min_px) / 2.0
    boxes = torch.stack([t[:, 3] - half, t[:, 2] - half, t[:, 3] + half, t[:, 2] + half], dim=1)
    group = torch.tensor([classes.index(NMS_GROUP[c]) if NMS_GROUP.get(c) in classes else i
                          for i, c in enumerate(classes)])[t[:, 0].long()]
    keep = batched_nms(boxes.float(), t[:, 1].float(), group, iou)
    return [raw[i] for i in sorted(keep.tolist())]


def make_detector(cfg: DetectorConfig) -> Detector:
    """The detector named in the config: 'learned' (committed weights) or 'classical' (heuristic baseline)."""
    if cfg.name == "classical":
        from pipeline.classical import ClassicalDetector

        return ClassicalDetector(cfg)
    return LearnedDetector(cfg)
