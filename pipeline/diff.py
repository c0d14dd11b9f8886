"""Diff stage: robust per-zone baselines from earlier observations, change scores, and ChangeEvents.

Baselines are medians over the earlier *observed* values of a metric inside ``baseline_window_days`` (gaps and
clouded observations simply drop out). Counts are density-corrected by the cloud-free share of the metric's zones,
and a zone below ``min_zone_valid`` is not observed, so clouds lower confidence but never read as a drawdown.

Events (``compare``):
- ``airlift_surge``: confident large aircraft (score >= surge_min_score) on aprons/runways >= surge_factor x
  baseline or a significant rise (baseline + surge_sigma x max(sqrt(baseline), spread)), and always >= baseline +
  surge_min_increase; never while the count is below the previous look's (surge_not_falling);
- ``outbound_columns``: vehicles in outbound columns, net of inbound ones on the same egress road, >=
  outbound_min_vehicles (and above their own baseline);
- ``asset_drawdown``: parked aircraft, parked vehicles or vessels moored at piers below drawdown_fraction x baseline
  on two consecutive observations
  (a single low observation is a provisional *drop*: no event of its own, but a withdrawal signal);
- ``withdrawal_activity``: within cooccurrence_days at least two different signals of which one is a departure
  (outbound columns, drawdown or drop), or outbound columns on ``mass_outbound_columns`` egress roads at once.
  Beside an airlift surge, thinner outbound traffic (``surge_corroborating_vehicles``, no event of its own) is
  departure enough.
  Clouded passes in between do not use up the window (``cooccurrence_window``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import lru_cache

import numpy as np

from pipeline.config import DiffConfig
from pipeline.observe import CONFIDENT_LARGE_AIRCRAFT, PARKED_VEHICLE
from pipeline.types import AOI, ChangeEvent, Column, Detection, Observation
from pipeline.vessels import VESSEL


@dataclass(frozen=True)
class ZoneMetric:
    """A count read from zones of some kinds, e.g. large aircraft on aprons and runways."""

    name: str
    classes: tuple[str, ...]
    zone_kinds: tuple[str, ...]
    derived_from: str | None = None  # a zone that counted this class but not ``classes`` predates the count
    min_drop: str | None = None  # DiffConfig field: how many fewer than expected a low count must also be


LARGE_AIRCRAFT = ZoneMetric("large_aircraft", (CONFIDENT_LARGE_AIRCRAFT,), ("apron", "runway"),
                            derived_from="large_aircraft")
PARKED_AIRCRAFT = ZoneMetric("parked_aircraft", ("small_aircraft", "helicopter"), ("apron",))
PARKED_VEHICLES = ZoneMetric("parked_vehicles", (PARKED_VEHICLE,), ("vehicle_park", "pier"))
MOORED_VESSELS = ZoneMetric("moored_vessels", (VESSEL,), ("pier",),  # ships leaving a naval base's piers
                            min_drop="moored_min_drop")
DRAWDOWN_METRICS = (PARKED_AIRCRAFT, PARKED_VEHICLES, MOORED_VESSELS)
DEPARTURE_KINDS = ("outbound_columns", "asset_drawdown", "asset_drop")


@dataclass(frozen=True)
class Measure:
    """A metric now against its baseline, over the zones observed now that have a baseline."""

    baseline: float  # median of earlier density-corrected counts
    expected: float  # baseline scaled by the share of the zones seen now
    current: int
    spread: float
    coverage: float  # area-weighted share of the metric's zones seen now (0-1)
    n_history: int
    zones: tuple[str, ...]
    previous: float = 0.0  # the latest earlier density-corrected count, scaled by the share seen now

    @property
    def ratio(self) -> float:
        return self.current / self.expected if self.expected > 0 else float("inf")


@dataclass(frozen=True)
class Signal:
    kind: str
    score: float
    confidence: float
    baseline: dict
    current: dict
    zones: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()  # column ids
    acquisitions: tuple[str, ...] = field(default=())
    min_score: float | None = None  # evidence: only detections of ``classes`` scoring at least this


def _zones(aoi: AOI, kinds: tuple[str, ...]) -> list[str]:
    return [z.name for z in aoi.zones if z.kind in kinds]


def _zone_value(obs: Observation, zone: str, classes: tuple[str, ...]) -> int:
    counts = obs.zone_counts.get(zone, {})
    return int(sum(counts.get(c, 0) for c in classes))


def window(history: Sequence[Observation], obs: Observation, days: int) -> list[Observation]:
    """Earlier observations within ``days`` before ``obs`` (time-ordered input assumed)."""
    t = obs.acquisition.datetime
    lo = t - timedelta(days=days)
    return [h for h in history if lo <= h.acquisition.datetime < t and h.acquisition.id != obs.acquisition.id]


def cooccurrence_window(history: Sequence[Observation], obs: Observation, cfg: DiffConfig) -> list[Observation]:
    """Earlier observations whose signals co-occur with ``obs``: within ``cooccurrence_days`` of observed time,
    where the time up to a pass that clouds hid (valid fraction under ``min_zone_valid``) is not counted, and never
    more than ``cooccurrence_max_days`` back. Why: under clouds an AOI is seen every 10-15 days instead of every 5;
    signals on consecutive clear passes are as close as the imagery lets them be."""
    t = obs.acquisition.datetime
    earlier = sorted((h for h in window(history, obs, max(cfg.cooccurrence_max_days, cfg.cooccurrence_days))),
                     key=lambda h: h.acquisition.datetime, reverse=True)
    out: list[Observation] = []
    later, unseen = obs, timedelta(0)
    for h in earlier:
        if later is not obs and later.valid_fraction < cfg.min_zone_valid:
            unseen += later.acquisition.datetime - h.acquisition.datetime
        if t - h.acquisition.datetime - unseen <= timedelta(days=cfg.cooccurrence_days):
            out.append(h)
        later = h
    return out[::-1]


@lru_cache(maxsize=64)
def _zone_areas(aoi: AOI) -> dict[str, float]:
    return {z.name: float(aoi.to_utm(z.polygon).area) for z in aoi.zones}


def metric_value(metric: ZoneMetric, aoi: AOI, obs: Observation,
                 cfg: DiffConfig) -> tuple[int, float, tuple[str, ...]] | None:
    """(count over the observed zones, area-weighted observed share, those zones), or None when under
    ``min_zone_valid`` of the metric's zones could be seen. Zones below ``min_zone_valid`` count as unseen."""
    areas = _zone_areas(aoi)
    zones = _zones(aoi, metric.zone_kinds)
    total = sum(areas[z] for z in zones)
    if not zones or total <= 0:
        return None
    seen = tuple(z for z in zones if obs.zone_valid.get(z, 0.0) >= cfg.min_zone_valid)
    if metric.derived_from and any(metric.derived_from in obs.zone_counts.get(z, {})
                                   and not any(c in obs.zone_counts[z] for c in metric.classes) for z in seen):
        return None  # stored before this count existed: not comparable, so not an observation of it
    share = sum(areas[z] * obs.zone_valid[z] for z in seen) / total
    if share < cfg.min_zone_valid:
        return None
    return sum(_zone_value(obs, z, metric.classes) for z in seen), share, seen


def measure(metric: ZoneMetric, aoi: AOI, history: Sequence[Observation], obs: Observation,
            cfg: DiffConfig, min_history: int | None = None) -> Measure | None:
    """``metric`` in ``obs`` against its baseline, or None when it is not observed now or lacks history.

    Assets move between zones of a kind (trucks from a park to a quay), so the metric is summed over its zones
    first; each earlier value is density-corrected by the share of the zones then seen, and the baseline is
    their median, scaled by the share seen now."""
    now = metric_value(metric, aoi, obs, cfg)
    if now is None:
        return None
    values = []
    for h in window(history, obs, cfg.baseline_window_days):
        got = metric_value(metric, aoi, h, cfg)
        if got is not None:
            values.append(got[0] / got[1])
    if len(values) < (cfg.min_history if min_history is None else min_history):
        return None
    current, share, zones = now
    median = float(np.median(values))
    mad = float(np.median(np.abs(np.asarray(values) - median))) * 1.4826
    return Measure(baseline=round(median, 2), expected=round(median * share, 2), current=current,
                   spread=round(mad * share, 2), coverage=round(min(share, 1.0), 3), n_history=len(values),
                   zones=zones, previous=values[-1] * share)


def history_factor(n: int) -> float:
    """Confidence multiplier for a baseline built from ``n`` observations: short history, lower confidence."""
    return n / (n + 1.0)


def _figures(m: Measure) -> tuple[dict, dict]:
    baseline = {"median": m.baseline, "expected_now": m.expected, "spread": m.spread, "observations": m.n_history}
    current = {"count": m.current, "coverage": m.coverage, "zones": list(m.zones)}
    return baseline, current


def surge_threshold(m: Measure, cfg: DiffConfig) -> float:
    """Large aircraft that make a surge against ``m``'s baseline: a doubling (small bases) or a significant rise
    (large bases, or a base inflated by a detector's steady false positives), and never under
    ``surge_min_increase`` more aircraft."""
    doubling = cfg.surge_factor * m.expected
    significant = m.expected + cfg.surge_sigma * max(math.sqrt(m.expected), m.spread)
    return max(min(doubling, significant), m.expected + cfg.surge_min_increase)


def _surge(aoi: AOI, history: Sequence[Observation], obs: Observation, cfg: DiffConfig) -> Signal | None:
    one_pass = cfg.surge_single_pass_increase is not None
    m = measure(LARGE_AIRCRAFT, aoi, history, obs, cfg, min_history=1 if one_pass else None)
    if m is not None and m.n_history < cfg.min_history and (
            m.n_history > 1 or m.current < m.expected + cfg.surge_single_pass_increase):
        m = None  # a short history: only one earlier pass, and a rise of surge_single_pass_increase, will do
    if m is None:
        return None
    threshold = surge_threshold(m, cfg)
    if m.current < threshold:
        return None
    if cfg.surge_not_falling and m.current < m.previous:  # falling from a peak: a surge continuing or ending
        return None
    strength = min(1.0, 0.7 + 0.1 * (m.current - threshold))
    baseline, current = _figures(m)
    current["min_score"] = cfg.surge_min_score
    current["needed"] = math.ceil(threshold - 1e-9)  # the fewest aircraft that make a surge; count - needed: margin
    return Signal("airlift_surge", score=round((m.current - m.expected) / max(m.spread, 1.0), 2),
                  confidence=round(strength * m.coverage * history_factor(m.n_history), 3),
                  baseline={"large_aircraft": baseline}, current={"large_aircraft": current},
                  zones=m.zones, classes=("large_aircraft",), min_score=cfg.surge_min_score)


def road_columns(aoi: AOI, obs: Observation, direction: str) -> list[Column]:
    """Columns of ``direction`` on the AOI's egress roads (any column when the AOI has no roads): off-road
    chains are too often clutter to count as a departure."""
    return [c for c in obs.columns if c.direction == direction and (c.road is not None or not aoi.roads)]


def _road_key(c: Column) -> str:
    return c.road or c.id


def net_outbound(aoi: AOI, obs: Observation) -> dict[str, int]:
    """Outbound minus inbound vehicles per egress road (per column off-road when the AOI has no roads), for the
    roads where more go out than come in. Why: at 10 m a slow truck's direction is sometimes read backwards, so one
    inbound column on a road shows up as columns both ways on it; and traffic both ways on one road is not an
    exodus from the base either."""
    net: dict[str, int] = {}
    for direction, sign in (("outbound", 1), ("inbound", -1)):
        for c in road_columns(aoi, obs, direction):
            net[_road_key(c)] = net.get(_road_key(c), 0) + sign * c.vehicles
    return {road: n for road, n in net.items() if n > 0}


def _outbound(aoi: AOI, history: Sequence[Observation], obs: Observation, cfg: DiffConfig,
              min_vehicles: int | None = None, kind: str = "outbound_columns") -> Signal | None:
    """Net outbound vehicles on egress roads of at least ``min_vehicles`` (default ``outbound_min_vehicles``) above
    their own baseline. ``kind="outbound_traffic"``: the weaker departure that only corroborates a surge."""
    least = cfg.outbound_min_vehicles if min_vehicles is None else min_vehicles
    net = net_outbound(aoi, obs)
    vehicles = sum(net.values())
    hist = window(history, obs, cfg.baseline_window_days)
    base = float(np.median([sum(net_outbound(aoi, h).values()) for h in hist])) if hist else 0.0
    if vehicles < max(least, base + least):
        return None
    out_cols = [c for c in road_columns(aoi, obs, "outbound") if _road_key(c) in net]
    inbound = sum(c.vehicles for c in road_columns(aoi, obs, "inbound"))
    strength = min(1.0, 0.45 + 0.05 * vehicles)
    confidence = strength * (0.5 + 0.5 * obs.valid_fraction) * (1.0 if hist else 0.8)
    return Signal(kind, score=round(vehicles / cfg.outbound_min_vehicles, 2),
                  confidence=round(confidence, 3),
                  baseline={"outbound_vehicles_median": base, "observations": len(hist)},
                  current={"outbound_columns": len(out_cols), "outbound_vehicles": sum(c.vehicles for c in out_cols),
                           "net_outbound_vehicles": vehicles, "inbound_vehicles": inbound,
                           "roads": sorted({c.road for c in out_cols if c.road}), "outbound_roads": len(net)},
                  columns=tuple(c.id for c in out_cols))


def _low(m: Measure | None, cfg: DiffConfig, metric: ZoneMetric) -> bool:
    least = getattr(cfg, metric.min_drop) if metric.min_drop else 0
    return (m is not None and m.expected >= cfg.min_parked_baseline
            and m.current < cfg.drawdown_fraction * m.expected and m.expected - m.current >= least)


def _drawdown(metric: ZoneMetric, aoi: AOI, history: Sequence[Observation], obs: Observation,
              cfg: DiffConfig) -> Signal | None:
    """Confirmed drawdown (this and the previous observed value both low against the baseline formed before
    them), or a provisional drop (low now only). The confirmation is judged without the previous low value in the
    baseline: with it, a short history's median sinks towards the drop and the second low look no longer reads low
    (ships gone on 13 Dec, still gone on 18 Dec, against passes of 4, 4 and 2 ships)."""
    m = measure(metric, aoi, history, obs, cfg)
    if m is None:
        return None
    confirmed = False
    acquisitions: tuple[str, ...] = (obs.acquisition.id,)
    hist = window(history, obs, cfg.baseline_window_days)
    for i in range(len(hist) - 1, -1, -1):
        prev = hist[i]
        m_prev = measure(metric, aoi, history, prev, cfg)
        if m_prev is None:
            continue  # not observed then: look further back
        without_prev = [h for h in history if h.acquisition.id != prev.acquisition.id]
        m_now = measure(metric, aoi, without_prev, obs, cfg)
        confirmed = _low(m_prev, cfg, metric) and _low(m_now, cfg, metric)
        if confirmed:
            m = m_now
            acquisitions = (prev.acquisition.id, obs.acquisition.id)
        break
    if not confirmed and not _low(m, cfg, metric):
        return None
    drop = 1.0 - m.current / m.expected
    strength = min(1.0, 0.5 + drop)
    confidence = strength * m.coverage * history_factor(m.n_history) * (1.0 if confirmed else 0.7)
    baseline, current = _figures(m)
    current["confirmed"] = confirmed
    return Signal("asset_drawdown" if confirmed else "asset_drop", score=round(drop, 3),
                  confidence=round(confidence, 3), baseline={metric.name: baseline}, current={metric.name: current},
                  zones=m.zones, classes=metric.classes,
                  acquisitions=acquisitions)


def signals(aoi: AOI, history: Sequence[Observation], obs: Observation, cfg: DiffConfig) -> list[Signal]:
    """Every departure from the baseline ``obs`` shows (withdrawal excluded: it combines these)."""
    found = [_surge(aoi, history, obs, cfg), _outbound(aoi, history, obs, cfg)]
    found += [_drawdown(metric, aoi, history, obs, cfg) for metric in DRAWDOWN_METRICS]
    return [s for s in found if s is not None]


def _withdrawal(aoi: AOI, history: Sequence[Observation], obs: Observation, now: list[Signal],
                cfg: DiffConfig) -> Signal | None:
    traffic_now = _corroborating_traffic(aoi, history, [obs], cfg) if cfg.surge_corroborating_vehicles else []
    if not now and not traffic_now:  # a withdrawal is raised on a look that itself shows something
        return None
    recent = cooccurrence_window(history, obs, cfg)
    seen: list[tuple[Observation, Signal]] = [(obs, s) for s in now]
    for h in recent:
        earlier = [x for x in history if x.acquisition.datetime < h.acquisition.datetime]
        seen += [(h, s) for s in signals(aoi, earlier, h, cfg)]
    best: dict[str, float] = {}
    for h, s in seen:
        k = "asset_drawdown" if s.kind == "asset_drop" else s.kind
        best[k] = max(best.get(k, 0.0), s.confidence * _staleness(h, obs, cfg))
    departure = any(k in best for k in ("outbound_columns", "asset_drawdown"))
    if not departure and "airlift_surge" in best and cfg.surge_corroborating_vehicles:
        traffic = _corroborating_traffic(aoi, history, recent, cfg) + traffic_now
        seen += traffic
        for h, s in traffic:
            best["outbound_traffic"] = max(best.get("outbound_traffic", 0.0), s.confidence * _staleness(h, obs, cfg))
        departure = bool(traffic)
    out_now = next((s for s in now if s.kind == "outbound_columns"), None)
    # several egress roads carrying columns out at once (one column that detection gaps split stays on one road)
    mass = out_now is not None and (
        out_now.current["outbound_roads"] >= cfg.mass_outbound_columns
        and out_now.current["outbound_vehicles"] - out_now.current["inbound_vehicles"] >= 2 * cfg.outbound_min_vehicles
    )
    if not ((departure and len(best) >= 2) or mass):
        return None
    if len(best) >= 2:
        confidence = float(np.mean(list(best.values()))) * min(1.0, 0.75 + 0.125 * (len(best) - 1))
    else:
        confidence = best["outbound_columns"] * 0.8
    baseline: dict = {}
    current: dict = {"signals": []}
    for h, s in seen:
        current["signals"].append({"kind": s.kind, "acquisition_id": h.acquisition.id,
                                   "when": h.acquisition.datetime.isoformat(), "confidence": s.confidence})
        if h is obs:  # figures of this observation's own signals, one entry per kind
            baseline[s.kind] = s.baseline
            current[s.kind] = s.current
    own = [s for h, s in seen if h is obs]  # this observation's signals, a corroborating one included
    return Signal("withdrawal_activity", score=round(sum(s.score for s in now), 2), confidence=round(confidence, 3),
                  baseline=baseline, current=current,
                  zones=tuple(z for s in now for z in s.zones), classes=tuple(c for s in now for c in s.classes),
                  columns=tuple(c for s in own for c in s.columns),
                  acquisitions=tuple(dict.fromkeys(h.acquisition.id for h, _ in seen)))


def _corroborating_traffic(aoi: AOI, history: Sequence[Observation], looks: Sequence[Observation],
                           cfg: DiffConfig) -> list[tuple[Observation, Signal]]:
    """Outbound traffic too thin for an ``outbound_columns`` event (at least ``surge_corroborating_vehicles``) on
    the ``looks`` of a co-occurrence window: beside a surge it is the departure, at 0.8 x its confidence (fewer
    trucks, weaker evidence)."""
    found = []
    for h in looks:
        earlier = [x for x in history if x.acquisition.datetime < h.acquisition.datetime]
        s = _outbound(aoi, earlier, h, cfg, cfg.surge_corroborating_vehicles, kind="outbound_traffic")
        if s is not None:
            found.append((h, replace(s, confidence=round(0.8 * s.confidence, 3))))
    return found


def _staleness(earlier: Observation, obs: Observation, cfg: DiffConfig) -> float:
    """Weight of an earlier signal in a withdrawal: 1 within ``cooccurrence_days``, less the further clouds
    stretched the window (cooccurrence_days / days apart): signals 10 days apart say less than signals 5 apart."""
    days = (obs.acquisition.datetime - earlier.acquisition.datetime).total_seconds() / 86400.0
    return 1.0 if days <= cfg.cooccurrence_days else cfg.cooccurrence_days / days


def _evidence(sig: Signal, detections: Sequence[Detection], obs: Observation) -> tuple[str, ...]:
    ids: list[str] = []
    zones, classes = set(sig.zones), set(sig.classes)
    for d in detections:
        key = PARKED_VEHICLE if d.cls == "vehicle" and not d.moving else d.cls
        weak = sig.min_score is not None and d.score is not None and d.score < sig.min_score
        if d.id and d.zone in zones and (key in classes or d.cls in classes) and not weak:
            ids.append(d.id)
    members = {c.id: c.members for c in obs.columns}
    for cid in sig.columns:
        ids.extend(members.get(cid, ()))
    return tuple(dict.fromkeys(ids))


def _with_scores(sig: Signal, detections: Sequence[Detection], obs: Observation) -> Signal:
    """The surge with the scores of the aircraft it counted, highest first (in its figures and in a withdrawal's).
    Why: a surge resting on aircraft scoring just over ``surge_min_score`` is one a hundredth of a score would undo
    (MODEL_CARD, stage 18), and the analyst should see that beside its margin (count against needed)."""
    wanted = set(_evidence(sig, detections, obs))
    scores = sorted((round(d.score, 2) for d in detections
                     if d.id in wanted and d.cls == "large_aircraft" and d.score is not None), reverse=True)
    return replace(sig, current={**sig.current, "large_aircraft": {**sig.current["large_aircraft"], "scores": scores}})


def compare(aoi: AOI, history: Sequence[Observation], obs: Observation, detections: Sequence[Detection],
            cfg: DiffConfig) -> list[ChangeEvent]:
    """ChangeEvents of ``obs`` against the earlier observations in ``history`` (same AOI and model).

    ``detections`` are the observation's own (ids and zones set); they become the events' evidence.
    """
    earlier = [h for h in history if h.acquisition.datetime < obs.acquisition.datetime]
    now = [_with_scores(s, detections, obs) if s.kind == "airlift_surge" else s
           for s in signals(aoi, earlier, obs, cfg)]
    withdrawal = _withdrawal(aoi, earlier, obs, now, cfg)
    events = []
    for sig in [*now, withdrawal]:
        if sig is None or sig.kind == "asset_drop":
            continue
        current = dict(sig.current)
        if sig.acquisitions:
            current.setdefault("acquisitions", list(sig.acquisitions))
        events.append(ChangeEvent(
            aoi=aoi.name, kind=sig.kind, acquisition_id=obs.acquisition.id, when=obs.acquisition.datetime,
            score=sig.score, confidence=sig.confidence, baseline=sig.baseline, current=current,
            evidence=_evidence(sig, detections, obs), zone=sig.zones[0] if len(sig.zones) == 1 else None,
        ))
    return events
