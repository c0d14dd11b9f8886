"""Imagery sources. Each module satisfies :class:`Source`; adding a source = one module + its test."""

from __future__ import annotations

from datetime import date
from typing import Protocol

from pipeline.types import AOI, Acquisition, Scene


class Source(Protocol):
    """Finds acquisitions over an AOI and loads them as Scenes."""

    name: str
    simulated: bool

    def search(self, aoi: AOI, start: date, end: date) -> list[Acquisition]:
        """Acquisitions intersecting ``aoi`` between ``start`` and ``end`` (inclusive), time-ordered."""
        ...

    def load(self, acquisition: Acquisition, aoi: AOI) -> Scene:
        """The scene of ``acquisition`` on the AOI's UTM grid at 10 m."""
        ...
