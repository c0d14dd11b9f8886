"""The committed detector on real Sentinel-2 pixels it never trained on (../shared/realdata; skipped when absent).

There are no labels, so these are plausibility checks with margins, not accuracy: trucks on the Braunschweig
motorway move along the carriageways, and a real airport and port hold almost no false "large aircraft".
"""

from __future__ import annotations

import pytest

from benchmarks.realdata import REALDATA, axial_spread, braunschweig_scene, sen2ships_scene
from pipeline.config import DetectorConfig
from pipeline.detect import make_detector

pytestmark = pytest.mark.skipif(not REALDATA.is_dir(), reason=f"real imagery not present at {REALDATA}")

MOTORWAY_AXIS_DEG = 110.0  # the A2 north of Braunschweig runs WNW-ESE across the patch


@pytest.fixture(scope="module")
def learned():
    return make_detector(DetectorConfig(name="learned"))


def test_real_truck_rainbows_are_found_along_the_motorway(learned):
    detections = learned.detect(braunschweig_scene())
    vehicles = [d for d in detections if d.cls == "vehicle"]
    assert len(vehicles) >= 8, f"only {len(vehicles)} moving vehicles on a busy motorway"
    axis, share_within_20 = axial_spread([d.heading_deg for d in vehicles])
    assert abs((axis - MOTORWAY_AXIS_DEG + 90) % 180 - 90) <= 20, f"headings run along {axis} deg, not the road"
    assert share_within_20 >= 0.6
    assert all(0 < d.speed_mps < 45 for d in vehicles if d.speed_mps is not None)
    assert not [d for d in detections if d.cls == "large_aircraft"], "no aircraft on a motorway"


def test_real_airport_and_port_give_few_false_aircraft(learned):
    scene = sen2ships_scene("cartagena")  # Rafael Nunez airport and the bay: no labelled aircraft, 88 km2
    aircraft = [d for d in learned.detect(scene) if d.cls == "large_aircraft"]
    assert len(aircraft) <= 5, f"{len(aircraft)} large aircraft reported over Cartagena"


def test_learned_beats_classical_on_real_false_alarms(learned):
    scene = sen2ships_scene("cartagena")
    classical = make_detector(DetectorConfig(name="classical")).detect(scene)
    ours = learned.detect(scene)
    assert len(ours) * 5 < len(classical)


def test_real_trucks_keep_to_the_right_with_the_heading_network():
    """Germany drives on the right: with headings re-read by the heading network (detector.heading_weights), each
    truck's side of the motorway must agree with its direction. Measured 17 of 17 (MODEL_CARD)."""
    from benchmarks.realdata import right_hand_share

    detector = make_detector(DetectorConfig(name="learned", heading_weights="models/weights/basewatch_heading.pt"))
    vehicles = [d for d in detector.detect(braunschweig_scene()) if d.cls == "vehicle"]
    assert len(vehicles) >= 8
    assert right_hand_share(vehicles) >= 0.9
    assert axial_spread([d.heading_deg for d in vehicles])[1] >= 0.85


def test_runs_cascade_keeps_the_motorway_trucks_and_drops_false_ones_in_the_city(learned):
    """The runs' config (configs/default.yaml) filters the detector's moving vehicles through the vehicle verifier.
    On the motorway it must keep the truck rainbows (measured 16 of 17, each on its right-hand carriageway); in the
    port, airport and city frames it removes breakwater edges and road markings (measured Cartagena 45 -> 27,
    Honolulu 11 -> 4)."""
    from benchmarks.realdata import right_hand_share
    from pipeline.config import load_config

    runs = make_detector(load_config().detector)
    assert "+verify-crop-v1@468b6b33148a>=" in runs.model_id
    vehicles = [d for d in runs.detect(braunschweig_scene()) if d.cls == "vehicle"]
    assert len(vehicles) >= 14
    assert right_hand_share(vehicles) >= 0.9
    for city in ("cartagena", "honolulu"):
        scene = sen2ships_scene(city)
        alone = sum(d.cls == "vehicle" for d in learned.detect(scene))
        kept = sum(d.cls == "vehicle" for d in runs.detect(scene))
        assert kept <= 0.8 * alone, f"{city}: {kept} of the detector's {alone} moving vehicles kept"
