"""`basewatch rederive`: derive a stored history again under new diff and alert settings, from the Store alone.

Each stored observation is counted again from its stored detections and columns (``diff.surge_min_score`` decides
which large aircraft are confident), every event is derived again, and each AOI's alerts are replayed; no scene is
read and nothing is detected again. Why: thresholds are tuned on the history an analyst already has, and
``run --reprocess`` would detect every scene again for a change that never touches detection. Detector and column
settings do change what was detected and grouped, so a change there is refused and needs ``--reprocess``.

The store ends exactly as a fresh run with the new settings would leave it (tested), in one transaction per AOI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import BasewatchConfig, load_aoi
from pipeline.errors import ConfigError, StoreError
from pipeline.observe import recount
from pipeline.run import REDERIVABLE_SECTIONS, changed_settings, make_detector, model_id, rediff
from pipeline.store import STORE_FILENAME, Store


class NotRederivable(ConfigError):
    """Settings changed that decide what was detected or grouped (``settings``): re-deriving cannot apply them."""

    def __init__(self, settings: list[str]):
        self.settings = settings
        super().__init__(f"{', '.join(settings)} changed since the history was derived: these change what was "
                         "detected or grouped, so rederive cannot apply them; run `basewatch run --reprocess`")


@dataclass
class RederiveResult:
    """What one rederive did."""

    run_id: str
    model: str
    observations: dict[str, int] = field(default_factory=dict)  # AOI -> observations derived again
    alert_changes: dict[str, str] = field(default_factory=dict)  # alert id -> new / updated / closed
    withdrawn: list[str] = field(default_factory=list)  # alerts the new settings no longer raise (deleted)
    changed: list[str] = field(default_factory=list)  # settings that differ from the history's
    simulated: bool = False


def stored_model(store: Store, config: BasewatchConfig) -> str:
    """The model whose history the config's detector reads (what `basewatch run` would store it under)."""
    detector, note = make_detector(config)
    model = model_id(detector)
    if note or model not in store.models():
        known = ", ".join(store.models()) or "none"
        raise StoreError(f"the store holds no observations of model {model!r} (the config's detector"
                         f"{'; ' + note if note else ''}); models stored: {known}")
    return model


def rederive(store: Store, config: BasewatchConfig, *, aois: list[str] | None = None,
             config_path: Path | None = None, model: str | None = None) -> RederiveResult:
    """Count, diff and alert every stored observation of ``aois`` (default: all the store has) again with
    ``config``'s diff and alert settings, for ``model`` (default: the config's detector's). Raises ConfigError when
    detector or column settings changed since the history was derived: those need ``basewatch run --reprocess``."""
    model = model or stored_model(store, config)
    names = aois or [a for a in store.aois() if model in store.models(a)]
    unknown = [a for a in names if model not in store.models(a)]
    if unknown:
        raise StoreError(f"nothing stored for {', '.join(unknown)} with model {model!r}")
    changed = sorted({key for keys, _ in changed_settings(store, config, model, names).values() for key in keys})
    blocking = [key for key in changed if key.split(".")[0] not in REDERIVABLE_SECTIONS]
    if blocking:
        raise NotRederivable(blocking)
    records = {name: store.acquisitions(name) for name in names}
    times = [r.acquisition.datetime.date() for recs in records.values() for r in recs]
    simulated = any(r.acquisition.simulated for recs in records.values() for r in recs)
    run_id = store.begin_run(config, source="store (rederive)", simulated=simulated, model=model, aois=names,
                             start=min(times), end=max(times))
    result = RederiveResult(run_id=run_id, model=model, changed=changed, simulated=simulated)
    status = "failed"
    try:
        for name in names:
            aoi = load_aoi(name, config_path)
            with store.transaction():
                before = {a.id for a in store.alerts(name, model=model)}
                history = store.observations(name, model)
                for obs in history:
                    store.replace_counts(recount(aoi, obs, store.detections(name, obs.acquisition.id, model),
                                                 config.diff.surge_min_score))
                first = history[0].acquisition.datetime
                result.alert_changes.update(rediff(store, run_id, aoi, model, config, first))
                result.withdrawn += sorted(before - {a.id for a in store.alerts(name, model=model)})
            result.observations[name] = len(history)
        status = "ok"
    finally:
        store.finish_run(run_id, status, {
            "rederived": True, "processed": 0, "skipped": 0, "failures": [], "simulated": simulated,
            "new_alerts": [i for i, what in result.alert_changes.items() if what == "new"],
            "notes": [f"re-derived from the store with changed settings: {', '.join(changed) or 'none'}"],
            "per_aoi": {name: {"acquisitions": n, "processed": n, "rederived": n}
                        for name, n in result.observations.items()},
        })
    return result


def rederive_command(*, config_path: Path | None, data_dir: Path | None, aois: list[str] | None,
                     no_report: bool) -> RederiveResult:
    """`basewatch rederive`: re-derive, print what changed, write the run's report."""
    from rich.console import Console

    from pipeline.config import load_config
    from pipeline.report import render_report
    from pipeline.store import open_store

    config = load_config(config_path)
    folder = Path(data_dir or config.data_dir)
    if not (folder / STORE_FILENAME).exists():
        raise StoreError(f"no store in {folder}: `basewatch run` first")
    out = Console()
    with open_store(folder) as store:
        result = rederive(store, config, aois=aois, config_path=config_path)
        report = None if no_report else render_report(store, result.run_id, folder)
    if result.simulated:
        out.print("[bold black on yellow] SIMULATED [/] the stored scenes come from the built-in simulator.")
    done = ", ".join(f"{n} observations of {name}" for name, n in result.observations.items())
    settings = ", ".join(result.changed) if result.changed else "unchanged settings"
    out.print(f"run {result.run_id}: re-derived {done} (model {result.model}) with {settings}", highlight=False)
    for alert_id, what in sorted(result.alert_changes.items()):
        out.print(f"  alert {alert_id}: {what}", highlight=False)
    for alert_id in result.withdrawn:
        out.print(f"  alert {alert_id}: no longer raised with these settings (removed)", highlight=False)
    if not result.alert_changes and not result.withdrawn:
        out.print("  alerts unchanged")
    if report:
        out.print(f"report: {report / 'index.html'}")
    return result


__all__ = ["NotRederivable", "RederiveResult", "rederive", "rederive_command", "stored_model"]
