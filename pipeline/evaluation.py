"""The evaluation matching rule of DESIGN.md, reusable by `basewatch evaluate`, benchmarks and tests.

Rule: a detection matches an unmatched truth object of the same class whose centre lies within 30 m
(large_aircraft) or 20 m (vehicle, small_aircraft), taken greedily in descending score; precision, recall and F1 per
class follow, and the count error is |detected - true| per scene. Only *moving* vehicles count as vehicle truth (parked
trucks are scenery; the task is moving vehicles), and only moving vehicle detections are scored. ``small_aircraft``
is scored as "parked aircraft": fighters and helicopters together (the same 2x2 px blob at 10 m; the learned
detector's small_aircraft class covers both, models/centernet.py CLASS_ALIASES).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.types import MapObject

MATCH_RADIUS_M: dict[str, float] = {"large_aircraft": 30.0, "vehicle": 20.0, "small_aircraft": 20.0}
EVAL_CLASSES: tuple[str, ...] = ("large_aircraft", "vehicle", "small_aircraft")
SCORED_AS: dict[str, tuple[str, ...]] = {"small_aircraft": ("small_aircraft", "helicopter")}
"""Object classes scored under an evaluation class other than their own name."""


def counts_as(obj: MapObject, cls: str) -> bool:
    """Whether ``obj`` is scored as class ``cls`` (vehicles: only moving ones, or ones of unknown state;
    small_aircraft: fighters and helicopters)."""
    if obj.cls not in SCORED_AS.get(cls, (cls,)):
        return False
    if cls == "vehicle":
        return obj.moving is not False
    return True


def heading_error_deg(a: float, b: float) -> float:
    """Smallest angle between two headings (degrees, 0..180)."""
    d = abs((a - b) % 360.0)
    return min(d, 360.0 - d)


@dataclass(frozen=True)
class Match:
    detection: MapObject
    truth: MapObject
    distance_m: float


@dataclass
class MatchResult:
    """Matches, false positives and misses of one class in one scene."""

    cls: str
    matches: list[Match] = field(default_factory=list)
    false_positives: list[MapObject] = field(default_factory=list)
    misses: list[MapObject] = field(default_factory=list)

    @property
    def tp(self) -> int:
        return len(self.matches)

    @property
    def fp(self) -> int:
        return len(self.false_positives)

    @property
    def fn(self) -> int:
        return len(self.misses)

    @property
    def count_error(self) -> int:
        return abs((self.tp + self.fp) - (self.tp + self.fn))


def match_class(detections: Iterable[MapObject], truth: Iterable[MapObject], cls: str,
                radius_m: float | None = None) -> MatchResult:
    """Greedy matching in descending score: each detection takes the nearest unmatched truth within the radius."""
    radius = MATCH_RADIUS_M[cls] if radius_m is None else radius_m
    dets = sorted((d for d in detections if counts_as(d, cls)), key=lambda d: -(d.score or 0.0))
    gts = [t for t in truth if counts_as(t, cls)]
    result = MatchResult(cls)
    if not gts:
        result.false_positives = list(dets)
        return result
    gxy = np.array([[t.x, t.y] for t in gts], dtype=np.float64)
    taken = np.zeros(len(gts), bool)
    for d in dets:
        dist = np.hypot(gxy[:, 0] - d.x, gxy[:, 1] - d.y)
        dist[taken] = np.inf
        k = int(np.argmin(dist))
        if dist[k] <= radius:
            taken[k] = True
            result.matches.append(Match(d, gts[k], float(dist[k])))
        else:
            result.false_positives.append(d)
    result.misses = [t for t, used in zip(gts, taken, strict=True) if not used]
    return result


@dataclass
class ClassSummary:
    """Aggregated figures of one class over many scenes."""

    cls: str
    tp: int = 0
    fp: int = 0
    fn: int = 0
    count_errors: list[int] = field(default_factory=list)
    heading_errors: list[float] = field(default_factory=list)

    def add(self, r: MatchResult) -> None:
        self.tp += r.tp
        self.fp += r.fp
        self.fn += r.fn
        self.count_errors.append(r.count_error)
        for m in r.matches:
            if m.detection.heading_deg is not None and m.truth.heading_deg is not None:
                self.heading_errors.append(heading_error_deg(m.detection.heading_deg, m.truth.heading_deg))

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else (1.0 if self.fn == 0 else 0.0)

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def mean_count_error(self) -> float:
        return float(np.mean(self.count_errors)) if self.count_errors else 0.0

    def heading_within(self, deg: float = 30.0) -> float | None:
        """Fraction of matched objects with a heading whose error is within ``deg`` (None: no headings)."""
        if not self.heading_errors:
            return None
        return float(np.mean(np.array(self.heading_errors) <= deg))

    def to_dict(self) -> dict:
        hw = self.heading_within(30.0)
        return {
            "tp": self.tp, "fp": self.fp, "fn": self.fn,
            "precision": round(self.precision, 4), "recall": round(self.recall, 4), "f1": round(self.f1, 4),
            "mean_abs_count_error": round(self.mean_count_error, 4), "scenes": len(self.count_errors),
            "heading_matched": len(self.heading_errors),
            "heading_within_30deg": None if hw is None else round(hw, 4),
            "heading_median_error_deg": (round(float(np.median(self.heading_errors)), 2)
                                         if self.heading_errors else None),
        }


def match_runs(pairs: Sequence[tuple[Sequence[MapObject], Sequence[MapObject]]],
               classes: Sequence[str] = EVAL_CLASSES) -> list[dict[str, MatchResult]]:
    """The matching rule applied to every (detections, truth) scene, per class."""
    return [{c: match_class(dets, truth, c) for c in classes} for dets, truth in pairs]


def summarise(matched: Sequence[dict[str, MatchResult]],
              classes: Sequence[str] = EVAL_CLASSES) -> dict[str, ClassSummary]:
    """Per-class summaries of :func:`match_runs` output."""
    out = {c: ClassSummary(c) for c in classes}
    for scene_matches in matched:
        for c in classes:
            out[c].add(scene_matches[c])
    return out


def evaluate_scenes(pairs: Sequence[tuple[Sequence[MapObject], Sequence[MapObject]]],
                    classes: Sequence[str] = EVAL_CLASSES) -> dict[str, ClassSummary]:
    """(detections, truth) per scene -> per-class summaries under the matching rule."""
    return summarise(match_runs(pairs, classes), classes)


def nan_to_none(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x
