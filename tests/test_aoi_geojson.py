"""AOIs to and from GeoJSON (QGIS round trip): what comes back equals what went out, QGIS's variations of the same
shapes are accepted, and a wrong file names the feature and what to change, and writes nothing."""

from __future__ import annotations

import copy
import json

import pytest
from typer.testing import CliRunner

from pipeline.aoi_geojson import advice, aoi_from_geojson, aoi_to_geojson, aoi_yaml, import_aoi
from pipeline.cli import app
from pipeline.config import AOIFile, aoi_dir, list_aoi_names, load_aoi_file, read_aoi_file
from pipeline.errors import ConfigError

SHIPPED = sorted(aoi_dir().glob("*.yaml"))


def shipped(name: str) -> AOIFile:
    return read_aoi_file(aoi_dir() / f"{name}.yaml")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_aois_survive_the_round_trip(path, tmp_path):
    aoi = read_aoi_file(path)
    back = aoi_from_geojson(json.loads(json.dumps(aoi_to_geojson(aoi))))
    assert back == aoi
    written = tmp_path / "x.yaml"
    written.write_text(aoi_yaml(back, "a header\nof two lines"), encoding="utf-8")
    assert read_aoi_file(written) == aoi  # the YAML written reads back as the same AOI
    assert load_aoi_file(written).roads[0].line.coords[0] == tuple(aoi.roads[0].line[0])


def _qgis_style(fc: dict) -> dict:
    """What a QGIS 'Save Features As' GeoJSON looks like: a crs member, single-part multi geometries, Z values,
    extra attribute columns (null where a feature has none) and more digits than anyone needs."""
    out = copy.deepcopy(fc)
    out["crs"] = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}
    for f in out["features"]:
        g = f["geometry"]
        f["properties"].setdefault("kind", None)
        f["properties"]["fid"] = 7
        if g["type"] == "Polygon":
            g["type"], g["coordinates"] = "MultiPolygon", [[[[x + 1e-9, y, 12.5] for x, y in g["coordinates"][0]]]]
        else:
            g["type"], g["coordinates"] = "MultiLineString", [[[x, y, 0.0] for x, y in g["coordinates"]]]
    return out


def test_a_qgis_saved_layer_imports_as_the_same_aoi():
    aoi = shipped("khmeimim")
    assert aoi_from_geojson(_qgis_style(aoi_to_geojson(aoi))) == aoi


def test_name_title_and_country_can_be_given_for_a_layer_drawn_without_them():
    fc = aoi_to_geojson(shipped("al_khadim"))
    fc["features"][0]["properties"] = {"role": "outline"}
    with pytest.raises(ConfigError, match="outline has no 'name' property; give one, or pass --name"):
        aoi_from_geojson(fc, "drawn.geojson")
    aoi = aoi_from_geojson(fc, "drawn.geojson", name="al_jufra", country="Libya")
    assert (aoi.name, aoi.title, aoi.country) == ("al_jufra", "al_jufra", "Libya")


def _broken(change) -> dict:
    fc = aoi_to_geojson(shipped("tartus"))
    change(fc["features"])
    return fc


def _zone(features: list, name: str) -> dict:
    return next(f for f in features if f["properties"]["name"] == name)


BROKEN = {
    "no role": (lambda fs: _zone(fs, "north_pier")["properties"].pop("role"),
                r"feature 3 \(north_pier\): property 'role' is None; set it to one of outline, zone, road"),
    "two outlines": (lambda fs: fs.append(copy.deepcopy(fs[0])),
                     "needs exactly one feature with role 'outline' \\(the AOI\\), found 2"),
    "unknown zone kind": (lambda fs: _zone(fs, "naval_quay")["properties"].update(kind="harbour"),
                          r"feature 4 \(naval_quay\): kind: Input should be 'runway', 'apron', 'vehicle_park'"),
    "zone without a name": (lambda fs: _zone(fs, "sea")["properties"].pop("name"),
                            r"feature 2: name: missing: give the feature a 'name' attribute"),
    "self-intersecting zone": (
        lambda fs: _zone(fs, "naval_vehicle_park")["geometry"].update(
            coordinates=[[[35.876, 34.912], [35.884, 34.918], [35.884, 34.912], [35.876, 34.918], [35.876, 34.912]]]),
        r"feature 5 \(naval_vehicle_park\): geometry: polygon is not valid"),
    "two-part zone": (
        lambda fs: _zone(fs, "north_pier")["geometry"].update(
            type="MultiPolygon", coordinates=[_zone(fs, "north_pier")["geometry"]["coordinates"]] * 2),
        r"feature 3 \(north_pier\): a MultiPolygon with 2 parts; draw one polygon per feature"),
    "zone with a hole": (
        lambda fs: _zone(fs, "tartus_city")["geometry"]["coordinates"].append(
            [[35.89, 34.895], [35.9, 34.895], [35.9, 34.9], [35.89, 34.895]]),
        r"feature 6 \(tartus_city\): the polygon has 1 hole\(s\)"),
    "road drawn as a polygon": (
        lambda fs: fs[-1].update(geometry=copy.deepcopy(fs[1]["geometry"])),
        r"feature 8 \(north_coast_road\): expected a LineString geometry, got Polygon"),
    "road drawn into the base": (
        lambda fs: fs[-1]["geometry"]["coordinates"].reverse(),
        r"feature 8 \(north_coast_road\): the road runs into the base: .* reverse the line"),
    "outline too big": (
        lambda fs: fs[0]["geometry"].update(
            coordinates=[[[35.0, 34.0], [37.0, 34.0], [37.0, 35.5], [35.0, 35.5], [35.0, 34.0]]]),
        r"feature 1 \(tartus\): geometry: outline spans more than 1 degree"),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_a_broken_layer_names_the_feature_and_the_fix(case):
    change, message = BROKEN[case]
    with pytest.raises(ConfigError, match=message):
        aoi_from_geojson(_broken(change), "edited.geojson")


def test_a_projected_layer_is_refused_with_the_qgis_fix():
    fc = aoi_to_geojson(shipped("tartus"))
    fc["crs"] = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32636"}}
    with pytest.raises(ConfigError, match="coordinates are in urn:ogc:def:crs:EPSG::32636; save the layer as "
                                          "GeoJSON in EPSG:4326"):
        aoi_from_geojson(fc, "utm.geojson")


def test_export_edit_import_on_the_command_line(config_copy, tmp_path):
    runner = CliRunner()
    exported = tmp_path / "tartus.geojson"
    ran = runner.invoke(app, ["aoi", "export", "tartus", "--out", str(exported), "--config", str(config_copy)])
    assert ran.exit_code == 0, ran.output
    fc = json.loads(exported.read_text(encoding="utf-8"))
    assert [f["properties"]["role"] for f in fc["features"]] == ["outline"] + ["zone"] * 5 + ["road"] * 2

    # the analyst moves the vehicle park in QGIS and saves under a new name
    park = _zone(fc["features"], "naval_vehicle_park")
    park["geometry"]["coordinates"] = [[[35.877, 34.913], [35.883, 34.913], [35.883, 34.917], [35.877, 34.917],
                                        [35.877, 34.913]]]
    edited = tmp_path / "edited.geojson"
    edited.write_text(json.dumps(_qgis_style(fc)), encoding="utf-8")
    ran = runner.invoke(app, ["aoi", "import", str(edited), "--name", "tartus_v2", "--config", str(config_copy)])
    assert ran.exit_code == 0, ran.output
    assert "tartus_v2" in list_aoi_names(config_copy)
    aoi = load_aoi_file(aoi_dir(config_copy) / "tartus_v2.yaml")
    assert aoi.name == "tartus_v2" and aoi.title == "Tartus naval facility"
    assert [round(c, 6) for c in next(z for z in aoi.zones if z.name == "naval_vehicle_park").polygon.bounds] == [
        35.877, 34.913, 35.883, 34.917]
    shown = runner.invoke(app, ["aoi", "show", "tartus_v2", "--config", str(config_copy)])
    assert shown.exit_code == 0 and "road north_coast_road" in shown.output


def test_import_never_overwrites_by_accident_and_a_bad_file_loses_nothing(config_copy, tmp_path):
    runner = CliRunner()
    target = aoi_dir(config_copy) / "tartus.yaml"
    before = target.read_text(encoding="utf-8")
    good = tmp_path / "tartus.geojson"
    good.write_text(json.dumps(aoi_to_geojson(shipped("tartus"))), encoding="utf-8")

    ran = runner.invoke(app, ["aoi", "import", str(good), "--config", str(config_copy)])
    assert ran.exit_code == 2 and "exists; pass --force to replace it" in ran.output
    assert target.read_text(encoding="utf-8") == before

    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps(_broken(lambda fs: fs[-1]["geometry"]["coordinates"].reverse())), encoding="utf-8")
    ran = runner.invoke(app, ["aoi", "import", str(bad), "--force", "--config", str(config_copy)])
    assert ran.exit_code == 2 and "the road runs into the base" in ran.output
    assert target.read_text(encoding="utf-8") == before

    truncated = tmp_path / "cut.geojson"
    truncated.write_text(good.read_text(encoding="utf-8")[:500], encoding="utf-8")
    ran = runner.invoke(app, ["aoi", "import", str(truncated), "--force", "--config", str(config_copy)])
    assert ran.exit_code == 2 and "not valid JSON" in ran.output
    assert target.read_text(encoding="utf-8") == before
    assert sorted(p.name for p in target.parent.iterdir()) == sorted(p.name for p in SHIPPED)  # no temp files left

    target_again, aoi = import_aoi(good, title="Tartus (re-drawn)", force=True, config_path=config_copy)
    assert target_again == target and load_aoi_file(target).title == "Tartus (re-drawn)"


def test_an_imported_aoi_is_simulated_and_run_like_a_shipped_one(config_copy, tmp_path):
    """The point of importing: a new base works everywhere an AOI name does."""
    fc = aoi_to_geojson(shipped("al_khadim"))
    fc["features"][0]["properties"].update(name="al_jufra", title="Al Jufra air base (drawn)")
    drawn = tmp_path / "al_jufra.geojson"
    drawn.write_text(json.dumps(fc), encoding="utf-8")
    import_aoi(drawn, config_path=config_copy)
    out = tmp_path / "scenes"
    ran = CliRunner().invoke(app, ["simulate", "--aoi", str(aoi_dir(config_copy) / "al_jufra.yaml"),
                                   "--date", "2024-12-14", "--out", str(out)])
    assert ran.exit_code == 0, ran.output
    assert len(list(out.glob("*.tif"))) == 1


def test_import_says_what_a_valid_aoi_still_cannot_show(config_copy, tmp_path):
    """An outline with a vehicle park but no apron and no road imports (it is valid), and the analyst is told
    which alerts it can never raise."""
    assert [advice(shipped(n)) for n in ("khmeimim", "tartus")] == [[], [
        "no apron or runway zone: large aircraft are not counted, so no airlift surge can be raised"]]
    fc = aoi_to_geojson(shipped("tartus"))
    fc["features"] = [f for f in fc["features"] if f["properties"]["role"] != "road"]
    park = _zone(fc["features"], "naval_vehicle_park")
    park["geometry"]["coordinates"][0][1][0] = 35.92  # a corner dragged past the outline's east edge (35.915)
    drawn = tmp_path / "sketch.geojson"
    drawn.write_text(json.dumps(fc), encoding="utf-8")
    ran = CliRunner().invoke(app, ["aoi", "import", str(drawn), "--name", "sketch", "--config", str(config_copy)])
    assert ran.exit_code == 0, ran.output
    said = " ".join(ran.output.split())
    assert "note: no apron or runway zone" in said and "note: no egress road" in said
    assert "note: zone naval_vehicle_park reaches outside the outline" in said
    assert "vehicle_park or pier" not in said
