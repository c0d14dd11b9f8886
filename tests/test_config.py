"""Config, AOI and scenario files: valid ones load; malformed ones give one message naming file, line, field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pipeline.config import (
    list_aoi_names,
    load_aoi,
    load_aoi_file,
    load_config,
    load_scenario,
)
from pipeline.errors import ConfigError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(loader, path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        loader(path)
    return str(info.value)


def test_shipped_files_load():
    cfg = load_config()
    assert cfg.detector.name == "learned"
    assert set(cfg.aois) <= set(list_aoi_names())
    for name in list_aoi_names():
        aoi = load_aoi(name)
        assert aoi.outline.is_valid
        for zone in aoi.zones:
            assert aoi.outline.buffer(1e-3).contains(zone.polygon), f"{name}:{zone.name} outside the outline"
    scenario = load_scenario()
    assert {s.aoi for s in scenario.sites} == {"khmeimim", "tartus", "al_khadim"}


def test_aois_are_where_facts_say():
    kh = load_aoi("khmeimim")
    assert kh.outline.contains(__import__("shapely").geometry.Point(35.949, 35.401))
    assert kh.crs.to_epsg() == 32636
    tartus = load_aoi("tartus")
    assert {z.kind for z in tartus.zones} >= {"pier", "water", "vehicle_park"}
    assert load_aoi("al_khadim").crs.to_epsg() == 32634


def test_unknown_key_is_refused_with_line(tmp_path):
    path = write(tmp_path, "c.yaml", """\
        data_dir: ./x
        detector:
          name: learned
          treshold: 0.5
        """)
    assert error_of(load_config, path) == (
        f"{path}: line 4: detector.treshold: unknown key (not allowed here; check the spelling)"
    )


def test_yaml_syntax_error_names_line(tmp_path):
    path = write(tmp_path, "c.yaml", """\
        data_dir: ./x
        source:
          kind: [simulated
        """)
    message = error_of(load_config, path)
    assert message.startswith(f"{path}: line 4, column 1: YAML syntax error:")


def test_wrong_enum_value(tmp_path):
    path = write(tmp_path, "c.yaml", """\
        source:
          kind: satellite
        """)
    assert error_of(load_config, path) == (
        f"{path}: line 2: source.kind: Input should be 'auto', 'simulated', 'sentinelhub' or 'files'"
    )


def test_out_of_range_number(tmp_path):
    path = write(tmp_path, "c.yaml", """\
        detector:
          score_threshold: 1.5
        """)
    assert error_of(load_config, path) == (
        f"{path}: line 2: detector.score_threshold: Input should be less than or equal to 1"
    )


def test_top_level_not_a_mapping(tmp_path):
    path = write(tmp_path, "c.yaml", "- just\n- a list\n")
    assert error_of(load_config, path) == f"{path}: line 1: expected a mapping of keys to values, got list"


def test_aoi_latlon_swapped(tmp_path):
    path = write(tmp_path, "bad.yaml", """\
        name: bad
        title: Bad
        outline: [[35.0, 95.0], [35.1, 95.0], [35.1, 95.1]]
        """)
    assert error_of(load_aoi_file, path) == (
        f"{path}: line 3: outline: coordinate (35.0, 95.0) is not lon/lat in degrees (lon -180..180, lat -90..90)"
    )


def test_aoi_self_intersecting_zone(tmp_path):
    path = write(tmp_path, "bad.yaml", """\
        name: bad
        title: Bad
        outline: [[35.0, 35.0], [35.1, 35.0], [35.1, 35.1], [35.0, 35.1]]
        zones:
          - name: bowtie
            kind: apron
            polygon: [[35.01, 35.01], [35.05, 35.05], [35.05, 35.01], [35.01, 35.05]]
        """)
    assert error_of(load_aoi_file, path) == (
        f"{path}: line 7: zones.0.polygon: polygon is not valid (self-intersecting or zero area); "
        "list corners in order"
    )


def test_aoi_missing_field_and_duplicate_zone(tmp_path):
    path = write(tmp_path, "bad.yaml", """\
        name: bad
        outline: [[35.0, 35.0], [35.1, 35.0], [35.1, 35.1]]
        """)
    assert error_of(load_aoi_file, path) == f"{path}: line 1: title: Field required"
    path = write(tmp_path, "dup.yaml", """\
        name: dup
        title: Dup
        outline: [[35.0, 35.0], [35.1, 35.0], [35.1, 35.1], [35.0, 35.1]]
        zones:
          - {name: a, kind: apron, polygon: [[35.01, 35.01], [35.02, 35.01], [35.02, 35.02]]}
          - {name: a, kind: runway, polygon: [[35.03, 35.03], [35.04, 35.03], [35.04, 35.04]]}
        """)
    assert error_of(load_aoi_file, path) == f"{path}: line 1: zone names must be unique, repeated: a"


def test_unknown_aoi_lists_known_ones():
    with pytest.raises(ConfigError, match=r"AOI 'nowhere' not found: .* \(known AOIs: al_khadim, khmeimim, tartus"):
        load_aoi("nowhere")


def test_scenario_phases_out_of_order(tmp_path):
    path = write(tmp_path, "s.yaml", """\
        name: s
        title: S
        start: 2024-12-01
        end: 2024-12-31
        sites:
          - aoi: khmeimim
            first_pass: 2024-12-13T08:25:00Z
            phases:
              - {name: b, start: 2024-12-10}
              - {name: a, start: 2024-12-01}
        """)
    assert error_of(load_scenario, path) == f"{path}: line 6: sites.0: phases must be in date order"


def test_missing_file():
    assert error_of(load_config, Path("/nonexistent/default.yaml")) == "/nonexistent/default.yaml: file not found"


def test_config_hash_is_stable_and_sensitive():
    a = load_config()
    assert a.hash() == load_config().hash()
    b = a.model_copy(update={"data_dir": "elsewhere"})
    assert a.hash() != b.hash()
