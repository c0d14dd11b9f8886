"""The Detector interface every detector (classical baseline, learned network) satisfies."""

from __future__ import annotations

from typing import Protocol

from pipeline.types import Detection, Scene


class Detector(Protocol):
    """Finds objects in a Scene; returns georeferenced Detections (map x/y in scene CRS and lon/lat)."""

    name: str
    version: str
    classes: tuple[str, ...]  # the classes it can report (evaluation scores only these)

    def detect(self, scene: Scene) -> list[Detection]:
        ...
