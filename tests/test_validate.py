"""`basewatch validate` reads everything a scheduled run will read and lists every problem, not just the first."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.validate import validate_all


def _edit(config: Path, **changes) -> None:
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data.setdefault(section, {})[field] = value
        else:
            data[key] = value
    config.write_text(yaml.safe_dump(data), encoding="utf-8")


def test_the_shipped_config_passes_every_check(config_copy):
    ran = CliRunner().invoke(app, ["validate", "--config", str(config_copy)])
    assert ran.exit_code == 0, ran.output
    assert "AOI file" in ran.output and "tartus.yaml" in ran.output and "scenario" in ran.output
    assert "SIMULATED" in ran.output and "checks passed" in ran.output and "error" not in ran.output


def test_every_problem_is_listed_not_just_the_first(config_copy):
    aois = config_copy.parent / "aois"
    (aois / "broken.yaml").write_text("name: broken\noutline: [[35.8, 34.9], [35.9\n", encoding="utf-8")
    (aois / "no_outline.yaml").write_text("name: no_outline\ntitle: x\n", encoding="utf-8")
    (aois / "khmeimim.yaml").unlink()
    data = yaml.safe_load(config_copy.read_text(encoding="utf-8"))
    data["schedules"][0]["aois"] = ["tartus", "latakia"]
    config_copy.write_text(yaml.safe_dump(data), encoding="utf-8")

    checks = validate_all(config_copy)
    problems = {c.detail.split(":")[0] if c.what == "AOI file" else c.what: c.problem for c in checks if not c.ok}
    assert str(aois / "broken.yaml") in problems and str(aois / "no_outline.yaml") in problems
    assert "khmeimim" in problems["config aois"]
    assert "latakia" in problems["schedule syria-daily"]
    # the seed and cloudy scenarios replay Khmeimim, whose file is gone
    assert sum(1 for c in checks if c.what == "scenario" and not c.ok and "khmeimim" in c.problem) >= 2
    assert [c.ok for c in checks if c.detail.startswith(str(aois / "tartus.yaml"))] == [True]

    ran = CliRunner().invoke(app, ["validate", "--config", str(config_copy)])
    assert ran.exit_code == 2
    assert "broken.yaml" in ran.output and "no_outline.yaml" in ran.output and "latakia" in ran.output


def test_an_unreadable_config_ends_the_checks(tmp_path):
    bad = tmp_path / "default.yaml"
    bad.write_text("diff:\n  surge_factor: [\n", encoding="utf-8")
    [check] = validate_all(bad)
    assert not check.ok and check.what == "config"


def test_missing_or_foreign_weights_are_named(config_copy, tmp_path):
    _edit(config_copy, detector__weights=str(tmp_path / "none.pt"))
    [weights] = [c for c in validate_all(config_copy) if c.what == "detector"]
    assert "weights not found" in weights.problem and "classical" in weights.problem
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    _edit(config_copy, detector__weights=str(junk))
    [weights] = [c for c in validate_all(config_copy) if c.what == "detector"]
    assert weights.problem and "cannot load" in weights.problem
    _edit(config_copy, detector__name="classical")
    [weights] = [c for c in validate_all(config_copy) if c.what == "detector"]
    assert weights.ok


def test_heading_network_weights_are_loaded_and_a_missing_file_names_the_fix(config_copy, tmp_path):
    [heading] = [c for c in validate_all(config_copy) if c.what == "heading network"]  # on in the shipped config
    assert heading.ok and "heading-crop-v1@" in heading.detail
    _edit(config_copy, detector__heading_weights=None)
    assert not [c for c in validate_all(config_copy) if c.what == "heading network"]
    _edit(config_copy, detector__heading_weights=str(tmp_path / "none.pt"))
    [heading] = [c for c in validate_all(config_copy) if c.what == "heading network"]
    assert "train-heading" in heading.problem and "null" in heading.problem


def test_aircraft_verifier_weights_are_loaded_and_a_missing_file_names_the_fix(config_copy, tmp_path):
    [verifier] = [c for c in validate_all(config_copy) if c.what == "aircraft verifier"]  # on in the shipped config
    assert verifier.ok and "verify-crop-v1@" in verifier.detail and "large_aircraft" in verifier.detail
    _edit(config_copy, detector__verifier_weights=None)
    assert not [c for c in validate_all(config_copy) if c.what == "aircraft verifier"]
    _edit(config_copy, detector__verifier_weights=str(tmp_path / "none.pt"))
    [verifier] = [c for c in validate_all(config_copy) if c.what == "aircraft verifier"]
    assert "train-verifier" in verifier.problem and "null" in verifier.problem


def test_a_faint_floor_without_a_vehicle_verifier_is_named(config_copy):
    assert not [c for c in validate_all(config_copy) if c.what.startswith("vehicle verifier, fainter")]  # off
    _edit(config_copy, detector__vehicle_verifier_faint_floor=0.3)
    [faint] = [c for c in validate_all(config_copy) if c.what.startswith("vehicle verifier, fainter")]
    assert faint.ok and faint.detail == "from score 0.3, kept at 0.95"
    _edit(config_copy, detector__vehicle_verifier_weights=None)
    [faint] = [c for c in validate_all(config_copy) if c.what.startswith("vehicle verifier, fainter")]
    assert "needs detector.vehicle_verifier_weights" in faint.problem


def test_a_candidate_verifier_floor_without_a_vehicle_verifier_is_named(config_copy):
    what = "vehicle verifier rejects as column candidates"
    [floor] = [c for c in validate_all(config_copy) if c.what == what]  # on in the shipped config
    assert floor.ok and floor.detail == "from probability 0.3"
    _edit(config_copy, detector__candidate_verifier_floor=0)
    assert not [c for c in validate_all(config_copy) if c.what == what]
    _edit(config_copy, detector__candidate_verifier_floor=0.3)
    _edit(config_copy, detector__vehicle_verifier_weights=None)
    [floor] = [c for c in validate_all(config_copy) if c.what == what]
    assert "no effect without detector.vehicle_verifier_weights" in floor.problem


def test_the_source_check_finds_credentials_without_showing_them(config_copy, monkeypatch):
    monkeypatch.delenv("SH_CLIENT_ID", raising=False)
    monkeypatch.delenv("SH_CLIENT_SECRET", raising=False)
    _edit(config_copy, source__kind="sentinelhub")
    [source] = [c for c in validate_all(config_copy) if c.what == "source"]
    assert "no Sentinel Hub credentials" in source.problem
    secret = "validate-test-client-secret-123"
    monkeypatch.setenv("SH_CLIENT_ID", "validate-test-id")
    monkeypatch.setenv("SH_CLIENT_SECRET", secret)
    ran = CliRunner().invoke(app, ["validate", "--config", str(config_copy)])
    assert ran.exit_code == 0, ran.output
    assert "credentials found" in ran.output and secret not in ran.output and "validate-test-id" not in ran.output
