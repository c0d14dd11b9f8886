"""Scenario timeline, the SimulatedSource and the `basewatch simulate` command."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import load_aoi, load_scenario
from pipeline.errors import SourceError
from pipeline.objects import read_objects
from pipeline.simulate import timeline
from pipeline.sources.simulated import SimulatedSource

runner = CliRunner()


@pytest.fixture(scope="module")
def scenario():
    return load_scenario()


@pytest.fixture(scope="module")
def source(scenario):
    return SimulatedSource(scenario)


def test_search_returns_overpasses_every_revisit_in_the_window(source, scenario):
    aoi = load_aoi("khmeimim")
    acqs = source.search(aoi, date(2024, 11, 25), date(2025, 1, 10))
    assert 8 <= len(acqs) <= 12
    days = [a.datetime.date() for a in acqs]
    assert all(b - a == timedelta(days=5) for a, b in zip(days, days[1:], strict=False))
    assert date(2024, 12, 13) in days and days[0] >= date(2024, 11, 25) and days[-1] <= date(2025, 1, 10)
    assert all(a.datetime.strftime("%H:%M:%S") == "08:25:00" for a in acqs)
    assert {a.sensor for a in acqs} == {"Sentinel-2A", "Sentinel-2B"}
    assert all(x.sensor != y.sensor for x, y in zip(acqs, acqs[1:], strict=False))
    dec13 = next(a for a in acqs if a.datetime.date() == date(2024, 12, 13))
    assert dec13.id == "sim-S2A-khmeimim-20241213T082500"
    assert dec13.cloud_cover == 0.0  # a clear date
    assert all(a.simulated and a.source == "simulated" for a in acqs)
    assert source.search(aoi, date(2024, 12, 14), date(2024, 12, 17)) == []
    with pytest.raises(SourceError, match="before it starts"):
        source.search(aoi, date(2024, 12, 20), date(2024, 12, 1))


def test_cloud_cover_is_deterministic_and_some_dates_are_cloudy(scenario):
    site = scenario.sites[0]
    a = timeline.site_acquisitions(scenario, site, scenario.start, scenario.end)
    b = timeline.site_acquisitions(scenario, site, scenario.start, scenario.end)
    assert [x.cloud_cover for x in a] == [x.cloud_cover for x in b]
    assert any(x.cloud_cover > 0 for x in a)


def test_phases_switch_on_their_start_dates(scenario):
    site = next(s for s in scenario.sites if s.aoi == "khmeimim")
    assert timeline.activity_on(site, date(2024, 12, 7)).name == "routine"
    assert timeline.activity_on(site, date(2024, 12, 8)).name == "regime-collapse"
    assert timeline.activity_on(site, date(2024, 12, 11)).name == "regime-collapse"
    assert timeline.activity_on(site, date(2024, 12, 12)).name == "drawdown"
    assert timeline.activity_on(site, date(2025, 1, 5)).name == "continued-airlift"
    assert timeline.activity_on(site, date(2024, 1, 1)).name == "routine"  # before the first phase


def test_acquisition_seed_depends_on_scenario_aoi_and_date():
    s = timeline.acquisition_seed(1, "khmeimim", date(2024, 12, 13))
    assert s == timeline.acquisition_seed(1, "khmeimim", date(2024, 12, 13))
    assert s != timeline.acquisition_seed(2, "khmeimim", date(2024, 12, 13))
    assert s != timeline.acquisition_seed(1, "tartus", date(2024, 12, 13))
    assert s != timeline.acquisition_seed(1, "khmeimim", date(2024, 12, 18))


def test_load_and_truth_render_once_and_agree(source):
    aoi = load_aoi("tartus")
    acq = next(a for a in source.search(aoi, date(2024, 12, 13), date(2024, 12, 13)))
    scene = source.load(acq, aoi)
    truth = source.truth(acq, aoi)
    assert truth.scene is scene  # cached: one render
    assert scene.acquisition == acq and scene.simulated
    assert scene.valid.all()  # 13 Dec is a clear date
    outbound = [c for c in truth.truth_columns if c.direction == "outbound"]
    assert len(outbound) == 2  # Tartus drawdown phase: two outbound columns per scene


def test_an_aoi_outside_the_scenario_gets_generic_activity(scenario, tmp_path):
    aoi_file = tmp_path / "elsewhere.yaml"
    aoi_file.write_text("name: elsewhere\ntitle: Somewhere else\noutline: [[30.0, 30.0], [30.03, 30.0], "
                        "[30.03, 30.03], [30.0, 30.03]]\n")
    aoi = load_aoi(str(aoi_file))
    src = SimulatedSource(scenario)
    acqs = src.search(aoi, date(2024, 12, 1), date(2024, 12, 20))
    assert len(acqs) == 4
    sim = src.truth(acqs[0], aoi)
    assert sim.scene.bands.shape[1:] == (aoi.grid().height, aoi.grid().width)
    assert {o.cls for o in sim.truth} <= {"vehicle"}


def _pixels(path) -> bytes:
    with rasterio.open(path) as src:
        return src.read().tobytes()


def test_simulate_cli_writes_scene_and_truth_deterministically(tmp_path):
    out1, out2, out3 = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    r1 = runner.invoke(app, ["simulate", "--aoi", "khmeimim", "--date", "2024-12-13", "--out", str(out1)])
    assert r1.exit_code == 0, r1.output
    tif = out1 / "sim-S2A-khmeimim-20241213T082500.tif"
    truth = out1 / "sim-S2A-khmeimim-20241213T082500.truth.geojson"
    assert tif.exists() and truth.exists()
    with rasterio.open(tif) as src:
        assert src.dtypes[0] == "float32" and src.count == 5
        assert src.descriptions[:4] == ("B02", "B03", "B04", "B08") and src.descriptions[4] == "valid"
        assert src.crs.to_epsg() == 32636 and src.transform.a == 10.0
        assert src.tags()["SIMULATED"] == "true"
    fc = json.loads(truth.read_text())
    assert fc["type"] == "FeatureCollection" and fc["simulated"] is True
    classes = [f["properties"]["class"] for f in fc["features"]]
    assert classes.count("large_aircraft") == 6 and "vehicle_column" in classes
    lines = [f for f in fc["features"] if f["properties"]["class"] == "vehicle_column"]
    assert all(f["geometry"]["type"] == "LineString" and f["properties"]["direction"] in ("outbound", "inbound")
               for f in lines)
    objs = read_objects(truth, crs="EPSG:32636")
    assert len(objs) == len(fc["features"]) - len(lines)

    r2 = runner.invoke(app, ["simulate", "--aoi", "khmeimim", "--date", "2024-12-13", "--out", str(out2)])
    assert r2.exit_code == 0
    assert _pixels(tif) == _pixels(out2 / tif.name)
    r3 = runner.invoke(app, ["simulate", "--aoi", "khmeimim", "--date", "2024-12-13", "--out", str(out3),
                             "--seed", "7"])
    assert r3.exit_code == 0
    assert _pixels(tif) != _pixels(out3 / tif.name)


def test_simulate_cli_renders_a_non_overpass_date_and_windows(tmp_path):
    r = runner.invoke(app, ["simulate", "--aoi", "tartus", "--date", "2024-12-14", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "sim-S2A-tartus-20241214T082510.tif").exists()
    r = runner.invoke(app, ["simulate", "--aoi", "al_khadim", "--start", "2024-12-10", "--end", "2024-12-20",
                            "--out", str(tmp_path / "w")])
    assert r.exit_code == 0, r.output
    assert sorted(p.name[:-4] for p in (tmp_path / "w").glob("*.tif")) == [
        "sim-S2A-al_khadim-20241214T091500", "sim-S2B-al_khadim-20241219T091500"]


@pytest.mark.parametrize("args, message", [
    (["--date", "2024-12-13"], "give --aoi NAME"),
    (["--aoi", "nowhere", "--date", "2024-12-13"], "AOI 'nowhere' not found"),
    (["--aoi", "tartus"], "give --date"),
    (["--aoi", "tartus", "--start", "2024-12-20", "--end", "2024-12-01"], "is before --start"),
    (["--aoi", "tartus", "--held-out", "2"], "drop --aoi"),
])
def test_simulate_cli_user_errors_exit_2_with_one_line(tmp_path, args, message):
    r = runner.invoke(app, ["simulate", "--out", str(tmp_path), *args])
    assert r.exit_code == 2
    assert message in r.output
    assert "Traceback" not in r.output


def test_held_out_scenes_have_truth_and_index(tmp_path):
    r = runner.invoke(app, ["simulate", "--held-out", "2", "--seed", "5", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["simulated"] is True and len(index["scenes"]) == 2
    for entry in index["scenes"]:
        fc = json.loads((tmp_path / entry["truth"]).read_text())
        assert fc["simulated"] is True and len(fc["features"]) == entry["objects"] + entry["columns"]
        with rasterio.open(tmp_path / entry["scene"]) as src:
            assert src.count == 5 and src.crs.is_projected
            assert np.isfinite(src.read(1)).all()
    names = sorted(p.name for p in tmp_path.glob("*.tif"))
    assert names == ["heldout-5-0000.tif", "heldout-5-0001.tif"]


def test_truth_zone_is_the_innermost_zone_like_observe_assigns(source):
    """Parked trucks stand on Tartus's piers, which lie inside the 'sea' zone: the truth must say pier."""
    aoi = load_aoi("tartus")
    acq = next(a for a in source.search(aoi, date(2024, 12, 3), date(2024, 12, 3)))
    parked = [t for t in source.truth(acq, aoi).truth if t.cls == "vehicle" and not t.moving]
    kinds = {z.name: z.kind for z in aoi.zones}
    assert parked and all(kinds.get(t.zone) in ("pier", "vehicle_park") for t in parked), {t.zone for t in parked}
