"""Alerts from ChangeEvents: rules (which kinds, what severity) from the config, deduplication and lifecycle.

The alert state of an AOI is a pure function of its event history, replayed in time order: an event of a kind
with an open alert updates it (dedup key (aoi, kind)); otherwise it opens a new one; an alert not seen again for
``close_after_days`` of later observations is closed. Replaying keeps runs order-independent and kill-safe:
whatever order acquisitions arrived in, the same history gives the same alerts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from pipeline.config import AlertsConfig
from pipeline.types import Alert, ChangeEvent

_LEVELS = ("low", "medium", "high")
MAX_EVIDENCE = 200


def severity(kind: str, confidence: float, cfg: AlertsConfig) -> str:
    """The configured severity of ``kind``, one step lower when confidence is under 0.5."""
    base = _LEVELS.index(cfg.severity[kind])
    return _LEVELS[max(0, base - 1) if confidence < 0.5 else base]


def alert_id(aoi: str, kind: str, first_seen: datetime, model: str) -> str:
    """Deterministic: the same history gives the same ids, across runs and resumes."""
    return f"{aoi}:{kind}:{first_seen:%Y%m%d}:{model}"


def _open(event: ChangeEvent, model: str, cfg: AlertsConfig) -> Alert:
    return Alert(
        id=alert_id(event.aoi, event.kind, event.when, model), aoi=event.aoi, kind=event.kind,
        severity=severity(event.kind, event.confidence, cfg), confidence=event.confidence, status="new",
        first_seen=event.when, last_seen=event.when, acquisitions=[event.acquisition_id],
        baseline=dict(event.baseline), current=dict(event.current), evidence=list(event.evidence)[:MAX_EVIDENCE],
    )


def _update(alert: Alert, event: ChangeEvent, cfg: AlertsConfig) -> Alert:
    confidence = max(alert.confidence, event.confidence)
    evidence = list(dict.fromkeys([*event.evidence, *alert.evidence]))[:MAX_EVIDENCE]
    acquisitions = alert.acquisitions + ([event.acquisition_id] if event.acquisition_id not in alert.acquisitions
                                         else [])
    # baseline: as first seen (what "normal" was before the change), new keys added; current: latest per key
    return replace(alert, status="updated", last_seen=max(alert.last_seen, event.when), confidence=confidence,
                   severity=severity(alert.kind, confidence, cfg), acquisitions=acquisitions,
                   baseline={**event.baseline, **alert.baseline}, current={**alert.current, **event.current},
                   evidence=evidence)


def replay(events: Sequence[ChangeEvent], observed: Sequence[datetime], cfg: AlertsConfig,
           model: str = "") -> list[Alert]:
    """Alert states after the event history of one AOI (and model).

    ``observed``: times of every observation of the AOI (a later observation without the event is what lets an
    alert close). Events under ``min_confidence`` or of kinds without a configured severity stay silent.
    """
    timeline: list[tuple[datetime, int, ChangeEvent | None]] = [(t, 0, None) for t in observed]
    timeline += [(e.when, 1, e) for e in events if e.kind in cfg.severity and e.confidence >= cfg.min_confidence]
    timeline.sort(key=lambda item: (item[0], item[1], item[2].kind if item[2] else ""))
    closed: list[Alert] = []
    open_by_kind: dict[tuple[str, str], Alert] = {}
    for when, _, event in timeline:
        for key, alert in list(open_by_kind.items()):
            if when - alert.last_seen > timedelta(days=cfg.close_after_days):
                closed.append(replace(alert, status="closed"))
                del open_by_kind[key]
        if event is None:
            continue
        key = (event.aoi, event.kind)
        current = open_by_kind.get(key)
        open_by_kind[key] = _open(event, model, cfg) if current is None else _update(current, event, cfg)
    alerts = closed + list(open_by_kind.values())
    return sorted(alerts, key=lambda a: (a.first_seen, a.aoi, a.kind))


def changes(before: Sequence[Alert], after: Sequence[Alert]) -> dict[str, str]:
    """alert id -> 'new' / 'updated' / 'closed' for alerts that appeared or changed between two states."""
    old = {a.id: a for a in before}
    out: dict[str, str] = {}
    for a in after:
        prev = old.get(a.id)
        if prev is None:
            out[a.id] = "new"  # even if already closed: this is the first time anyone sees it
        elif prev != a:
            out[a.id] = "closed" if a.status == "closed" else "updated"
    return out
