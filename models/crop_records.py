"""Columns of per-crop arrays (a dataclass whose fields all hold N rows) that concatenate, subset and round-trip
through .npz: what the heading network's CropSet and the verifier's SampleSet share."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Self

import numpy as np


class CropRecords:
    """Mixin for a dataclass of arrays with the same first dimension (one row per crop)."""

    def __len__(self) -> int:
        return len(getattr(self, fields(self)[0].name))

    @classmethod
    def concat(cls, parts: list[Self]) -> Self:
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    def subset(self, mask: np.ndarray) -> Self:
        return type(self)(*(getattr(self, f.name)[mask] for f in fields(self)))

    def save(self, path: str | Path) -> None:
        np.savez(path, **{f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls, path: str | Path) -> Self:
        with np.load(path) as z:
            return cls(**{f.name: z[f.name] for f in fields(cls)})
