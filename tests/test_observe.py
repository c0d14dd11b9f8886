"""Observations: zone of each detection, per-zone counts and cloud-free fractions, columns by direction."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
from rasterio.features import geometry_mask
from shapely.geometry import LineString

from pipeline.config import load_aoi
from pipeline.georef import lonlat_to_map
from pipeline.observe import (
    confident_large_aircraft,
    not_observed,
    observe,
    prepare_detections,
    zone_valid_fractions,
)
from pipeline.plots import baseline_band, series_point
from pipeline.types import BAND_NAMES, Acquisition, Column, MapObject, Scene

AOI = load_aoi("tartus")


def scene(valid: np.ndarray | None = None) -> Scene:
    g = AOI.grid()
    acq = Acquisition(source="simulated", id="acq1", sensor="Sentinel-2A",
                      datetime=datetime(2024, 12, 13, 8, 25, tzinfo=UTC), simulated=True)
    if valid is None:
        valid = np.ones((g.height, g.width), bool)
    return Scene(bands=np.zeros((4, g.height, g.width), np.float32), band_names=BAND_NAMES, transform=g.transform,
                 crs=g.crs, valid=valid, acquisition=acq, simulated=True)


def at(zone: str, cls: str, moving: bool | None = None, score: float | None = 0.9) -> MapObject:
    c = AOI.zone(zone).polygon.centroid
    x, y = lonlat_to_map(AOI.crs.to_string(), c.x, c.y)
    return MapObject(cls=cls, x=x, y=y, lon=c.x, lat=c.y, moving=moving, score=score)


def test_zone_valid_fractions_follow_the_mask():
    s = scene()
    park = AOI.zone("naval_vehicle_park").polygon
    from pipeline.types import reproject_geometry

    inside = ~geometry_mask([reproject_geometry(park, "EPSG:4326", s.crs)], out_shape=s.valid.shape,
                            transform=s.transform)
    valid = np.ones_like(s.valid)
    rows = np.nonzero(inside.any(axis=1))[0]
    cols = np.nonzero(inside.any(axis=0))[0]
    valid[rows[0]:rows[len(rows) // 2], cols[0]:cols[-1] + 1] = False  # northern half of the park under cloud
    fractions = zone_valid_fractions(AOI, scene(valid))
    assert 0.4 < fractions["naval_vehicle_park"] < 0.6
    assert fractions["naval_quay"] == 1.0 and set(fractions) == {z.name for z in AOI.zones}


def test_detections_get_ids_and_the_innermost_zone():
    dets = [at("north_pier", "vehicle", moving=False), at("naval_vehicle_park", "vehicle", moving=False),
            at("tartus_city", "vehicle", moving=True)]
    out = prepare_detections(dets, AOI, AOI.crs.to_string(), "acq1", "m-1")
    assert [d.id for d in out] == ["acq1:m-1:0", "acq1:m-1:1", "acq1:m-1:2"]
    assert [d.zone for d in out] == ["north_pier", "naval_vehicle_park", "tartus_city"]  # pier is inside "sea"


def test_counts_per_class_zone_and_column_direction():
    dets = prepare_detections(
        [at("naval_vehicle_park", "vehicle", moving=False)] * 3 + [at("north_pier", "vehicle", moving=False),
                                                                    at("tartus_city", "vehicle", moving=True)],
        AOI, AOI.crs.to_string(), "acq1", "m")
    line = LineString([(35.885, 34.915), (35.895, 34.913)])
    cols = [Column(id="c0", members=("a", "b", "c"), line=line, length_m=900, heading_deg=95, direction="outbound",
                   vehicles=7, road="east_to_m1_highway"),
            Column(id="c1", members=("d", "e", "f"), line=line, length_m=900, heading_deg=275, direction="inbound",
                   vehicles=4, road="east_to_m1_highway")]
    obs = observe(AOI, scene(), dets, cols, "m")
    assert obs.counts["vehicle"] == 5 and obs.counts["parked_vehicle"] == 4 and obs.counts["moving_vehicle"] == 1
    assert obs.zone_counts["naval_vehicle_park"] == {"parked_vehicle": 3}
    assert obs.zone_counts["north_pier"] == {"parked_vehicle": 1}
    assert obs.zone_counts["tartus_city"] == {"moving_vehicle": 1}
    assert obs.counts["vehicles_outbound"] == 7 and obs.counts["columns_inbound"] == 1
    assert obs.zone_counts["road:east_to_m1_highway"] == {"columns_outbound": 1, "vehicles_outbound": 7,
                                                           "columns_inbound": 1, "vehicles_inbound": 4}
    assert obs.zone_counts["road:north_coast_road"] == {}
    assert obs.detection_ids == tuple(d.id for d in dets) and obs.valid_fraction == 1.0


def test_confident_large_aircraft_are_counted_beside_all_large_aircraft():
    """Surges are judged on aircraft scoring >= the surge's min_score; unscored truth always counts; a zone with
    only marginal aircraft still records 0 confident ones (so it is not mistaken for an older observation)."""
    dets = prepare_detections([at("naval_quay", "large_aircraft", score=0.8), at("naval_quay", "large_aircraft",
                                                                                 score=0.5),
                               at("naval_quay", "large_aircraft", score=None),
                               at("north_pier", "large_aircraft", score=0.46)], AOI, AOI.crs.to_string(), "acq1", "m")
    obs = observe(AOI, scene(), dets, [], "m", confident_score=0.55)
    assert obs.counts["large_aircraft"] == 4 and obs.counts["large_aircraft_confident"] == 2
    assert obs.zone_counts["naval_quay"] == {"large_aircraft": 3, "large_aircraft_confident": 2}
    assert obs.zone_counts["north_pier"] == {"large_aircraft": 1, "large_aircraft_confident": 0}
    assert observe(AOI, scene(), dets, [], "m").counts["large_aircraft_confident"] == 4  # no floor: all count
    assert confident_large_aircraft(observe(AOI, scene(), [], [], "m")) == 0  # none seen: 0, not unknown


def test_observations_stored_before_the_confident_count_show_it_as_unknown():
    """Older stores lack the count: plots and observations.csv leave it blank instead of inventing it, and the
    baseline band is formed from the observations that have it."""
    dets = prepare_detections([at("naval_quay", "large_aircraft")], AOI, AOI.crs.to_string(), "acq1", "m")
    new = observe(AOI, scene(), dets, [], "m", confident_score=0.55)
    old = replace(new, counts={k: v for k, v in new.counts.items() if k != "large_aircraft_confident"})
    assert confident_large_aircraft(old) is None and series_point(old).large_aircraft_confident is None
    points = [series_point(replace(o, acquisition=replace(o.acquisition, datetime=o.acquisition.datetime
                                                          + timedelta(days=5 * i))))
              for i, o in enumerate([old, new, new, new])]
    _, lo, hi = baseline_band(points, "large_aircraft_confident", window_days=30, min_history=2, min_valid=0.6)
    assert np.isnan(lo[:3]).all() and lo[3] == hi[3] == 1.0  # only the two newer ones before the last count


def test_all_cloud_scene_is_not_observed():
    obs = not_observed(AOI, scene(np.zeros(scene().valid.shape, bool)), "m")
    assert obs.valid_fraction == 0 and set(obs.zone_valid.values()) == {0.0} and obs.counts == {}


def test_a_vessel_beside_a_pier_is_moored_there_and_the_pier_is_seen_with_its_berths():
    """A ship floats next to the pier, not on it: within ``berth_m`` of a pier zone it counts in that pier's zone.
    Clouds over the berths (not the pier) make the pier less seen."""
    from pipeline.types import reproject_geometry

    crs = AOI.crs.to_string()
    pier = reproject_geometry(AOI.zone("north_pier").polygon, "EPSG:4326", crs)
    minx, miny, maxx, maxy = pier.bounds
    near = MapObject(cls="vessel", x=(minx + maxx) / 2, y=miny - 30, lon=0, lat=0, score=0.9)
    far = replace(near, y=miny - 300)
    truck = replace(near, cls="vehicle", moving=True)
    out = prepare_detections([near, far, truck], AOI, crs, "acq1", "m", berth_m=80)
    assert [d.zone for d in out] == ["north_pier", "sea", "sea"]  # a truck there is not moored (nor on the pier)
    assert prepare_detections([near], AOI, crs, "acq1", "m")[0].zone == "sea"  # berth_m 0: by containment only
    s = scene()
    berths = reproject_geometry(AOI.zone("north_pier").polygon, "EPSG:4326", s.crs).buffer(40).difference(pier)
    cloud = ~geometry_mask([berths], out_shape=s.valid.shape, transform=s.transform)
    fractions = zone_valid_fractions(AOI, scene(~cloud))
    assert fractions["north_pier"] < 0.7 and fractions["naval_quay"] == 1.0
