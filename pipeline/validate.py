"""`basewatch validate`: check everything a scheduled run will read, and list every problem, not just the first.

Why: a cron job that fails at 03:00 on the second of five AOI files, after the first was fixed, costs a night per
typo. This reads the config, every AOI file in its AOI folder (imported ones too, not only those the config runs),
the scenarios, the schedules' AOIs and the detector weights, and says where imagery would come from, without
fetching anything or printing a secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.config import (
    BasewatchConfig,
    aoi_dir,
    list_aoi_names,
    load_aoi_file,
    load_config,
    load_scenario,
    resolve_path,
)
from pipeline.errors import BasewatchError


@dataclass(frozen=True)
class Check:
    """One thing read, and what was wrong with it (``problem`` None: fine)."""

    what: str
    detail: str
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def validate_all(config_path: Path | None = None, scenarios: list[Path] | None = None) -> list[Check]:
    """Every check, in reading order. A config that cannot be read ends the list: the rest depends on it."""
    shown = str(config_path or "configs/default.yaml")
    try:
        config = load_config(config_path)
    except BasewatchError as exc:
        return [Check("config", shown, str(exc))]
    checks = [Check("config", f"{shown} (hash {config.hash()})")]
    known = _aoi_files(config_path, checks)
    checks += _names_exist("config aois", config.aois, known)
    for entry in config.schedules:
        checks += _names_exist(f"schedule {entry.name}", entry.aois, known)
    for path in _scenario_paths(config, scenarios):
        checks.append(_scenario(path, known))
    checks.append(_weights(config))
    if config.detector.name == "learned" and config.detector.heading_weights:
        checks.append(_heading_weights(config.detector.heading_weights))
    if config.detector.name == "learned" and config.detector.verifier_weights:
        checks.append(_verifier_weights(config.detector.verifier_weights))
    if config.detector.name == "learned" and config.detector.vehicle_verifier_weights:
        checks.append(_verifier_weights(config.detector.vehicle_verifier_weights, "vehicle verifier",
                                        config.detector.vehicle_verifier_floor))
    faint = config.detector.vehicle_verifier_faint_floor
    if config.detector.name == "learned" and faint is not None:
        checks.append(Check("vehicle verifier, fainter peaks",
                            f"from score {faint:g}, kept at {config.detector.vehicle_verifier_faint_threshold:g}",
                            None if config.detector.vehicle_verifier_weights else
                            "detector.vehicle_verifier_faint_floor needs detector.vehicle_verifier_weights"))
    candidate_floor = config.detector.candidate_verifier_floor
    if config.detector.name == "learned" and candidate_floor > 0:
        checks.append(Check("vehicle verifier rejects as column candidates", f"from probability {candidate_floor:g}",
                            None if config.detector.vehicle_verifier_weights else
                            "detector.candidate_verifier_floor has no effect without "
                            "detector.vehicle_verifier_weights"))
    checks.append(_source(config))
    return checks


def _aoi_files(config_path: Path | None, checks: list[Check]) -> set[str]:
    """Check each AOI file in the config's AOI folder; returns the names that load."""
    good = set()
    folder = aoi_dir(config_path)
    for name in list_aoi_names(config_path):
        path = folder / f"{name}.yaml"
        try:
            aoi = load_aoi_file(path)
        except BasewatchError as exc:
            checks.append(Check("AOI file", str(path), str(exc)))
            continue
        good.add(name)
        checks.append(Check("AOI file", f"{path}: {len(aoi.zones)} zones, {len(aoi.roads)} egress roads"))
    return good


def _names_exist(what: str, names: list[str], known: set[str]) -> list[Check]:
    missing = [n for n in names if n not in known]
    if missing:
        return [Check(what, ", ".join(names), f"no valid AOI file for {', '.join(missing)} "
                      f"(valid: {', '.join(sorted(known)) or 'none'})")]
    return [Check(what, ", ".join(names))]


def _scenario_paths(config: BasewatchConfig, scenarios: list[Path] | None) -> list[Path]:
    from pipeline.scenarios import default_scenarios

    paths = [resolve_path(config.scenario), *(scenarios if scenarios is not None else default_scenarios())]
    return list(dict.fromkeys(p.resolve() for p in paths))


def _scenario(path: Path, known: set[str]) -> Check:
    try:
        scenario = load_scenario(path)
    except BasewatchError as exc:
        return Check("scenario", str(path), str(exc))
    sites = [s.aoi for s in scenario.sites]
    missing = [s for s in sites if s not in known]
    detail = f"{path.name}: {scenario.name}, {len(sites)} sites, {len(scenario.expectations)} expectations"
    if missing:
        return Check("scenario", detail, f"sites name AOIs without a valid file: {', '.join(missing)}")
    return Check("scenario", detail)


def _heading_weights(weights: str) -> Check:
    """Load the heading network as a run would: a missing or foreign file stops the run with this error."""
    try:
        from models.heading_net import load_heading_net

        net, meta = load_heading_net(resolve_path(weights))
    except (BasewatchError, OSError, RuntimeError, ValueError) as exc:
        return Check("heading network", weights, f"cannot load: {exc}")
    return Check("heading network", f"{weights} ({net.spec.version}@{meta.get('weights_id', 'unknown')})")


def _verifier_weights(weights: str, what: str = "aircraft verifier", floor: float | str | None = None) -> Check:
    """Load a verifier as a run would: a missing or foreign file stops the run with this error."""
    try:
        from models.verify_net import load_verify_net

        net, meta = load_verify_net(resolve_path(weights))
    except (BasewatchError, OSError, RuntimeError, ValueError) as exc:
        return Check(what, weights, f"cannot load: {exc}")
    return Check(what, f"{weights} ({net.spec.version}@{meta.get('weights_id', 'unknown')}, "
                 f"{net.spec.cls} from {_floor_text(floor, meta)}, kept at {meta.get('threshold')})")


def _floor_text(floor: float | str | None, meta: dict) -> str:
    if floor == "detector":
        return "the detector's own threshold (a filter)"
    return f"score {meta.get('floor') if floor is None else floor}"


def _weights(config: BasewatchConfig) -> Check:
    """Load the learned detector's weights as a run would (metadata checked against classes, bands and version)."""
    cfg = config.detector
    if cfg.name != "learned":
        return Check("detector", f"{cfg.name} (no weights)")
    path = resolve_path(cfg.weights)
    if not path.exists():
        return Check("detector", str(cfg.weights), "weights not found: a run would fall back to the classical "
                     "detector (train them, or set detector.name: classical)")
    try:
        from models.checkpoint import load_model

        model, meta = load_model(path)
    except (BasewatchError, OSError, RuntimeError, ValueError) as exc:
        return Check("detector", str(cfg.weights), f"cannot load: {exc}")
    thresholds = ", ".join(f"{k} {v}" for k, v in sorted(meta.get("thresholds", {}).items()))
    return Check("detector", f"learned, {cfg.weights} ({model.spec.version}; thresholds {thresholds})")


def _source(config: BasewatchConfig) -> Check:
    """Where imagery would come from; credentials are looked up, never shown."""
    from pipeline.sources.select import credentials_available

    wanted = config.source.kind
    if wanted == "files":
        return Check("source", "files: scenes are read from local GeoTIFFs")
    found = credentials_available(config)
    if wanted == "sentinelhub" and not found:
        return Check("source", "sentinelhub", "no Sentinel Hub credentials found (environment or the sentinelhub "
                     "config file): `basewatch run` would stop")
    if wanted == "simulated" or (wanted == "auto" and not found):
        return Check("source", f"{wanted} -> simulated: scenes are SIMULATED (no Sentinel Hub credentials)")
    return Check("source", f"{wanted} -> sentinelhub ({config.source.profile}; credentials found)")
