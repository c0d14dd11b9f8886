"""`basewatch alerts`: the store's current alerts at a glance, for a terminal or a script.

Why: between scheduled runs an analyst asks "what is open right now, and since when?" without opening the newest
report (which shows one run's changes) or querying SQLite by hand. Reads the store only; never creates one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import StoreError
from pipeline.report import sort_alerts
from pipeline.store import STORE_FILENAME, Store
from pipeline.types import Alert

OPEN_STATUSES = ("new", "updated")


@dataclass(frozen=True)
class AlertListing:
    """Alerts of one model in a store, most severe first, and whether any of them rests on simulated scenes."""

    model: str | None
    alerts: list[Alert]
    simulated: bool
    models: list[str]

    def to_dict(self) -> dict:
        return {
            "simulated": self.simulated,
            "model": self.model,
            "alerts": [{"id": a.id, "aoi": a.aoi, "kind": a.kind, "severity": a.severity, "confidence": a.confidence,
                        "status": a.status, "first_seen": a.first_seen.isoformat(),
                        "last_seen": a.last_seen.isoformat(), "acquisitions": a.acquisitions,
                        "evidence": len(a.evidence), "baseline": a.baseline, "current": a.current}
                       for a in self.alerts],
        }


def list_alerts(data_dir: Path, *, aoi: str | None = None, include_closed: bool = False,
                model: str | None = None) -> AlertListing:
    """Open alerts (or all, with ``include_closed``) of ``model`` (default: the model of the newest run that stored
    any), most severe first."""
    path = Path(data_dir) / STORE_FILENAME
    if not path.exists():
        raise StoreError(f"no store at {path}: run `basewatch run` first (or pass --data-dir)")
    with Store(path) as store:
        runs = store.runs()
        models = list(dict.fromkeys(r.model for r in reversed(runs)))
        if model is not None and model not in models:
            raise StoreError(f"no run of model {model!r} in {path}; models stored: {', '.join(models) or 'none'}")
        chosen = model or (models[0] if models else None)
        alerts = [a for a in store.alerts(aoi=aoi, model=chosen) if include_closed or a.status in OPEN_STATUSES]
        simulated = any(r.simulated for r in runs if r.model == chosen)
    return AlertListing(model=chosen, alerts=sort_alerts(alerts), simulated=simulated, models=models)
