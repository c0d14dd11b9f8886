"""The `basewatch` command line. Each command is a thin wrapper over one module; user mistakes exit 2
with one clear message and no traceback."""

from __future__ import annotations

import functools
import logging
import os
import sys
from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from pipeline.config import list_aoi_names, load_aoi, load_config
from pipeline.errors import BasewatchError

app = typer.Typer(
    name="basewatch",
    help=(
        "Sentinel imagery change detection for military bases: fetch scenes over AOIs, detect large aircraft "
        "and vehicle columns, compare with the baseline and raise withdrawal alerts.\n\n"
        "With no credentials everything runs on the built-in simulated Sentinel-2 source (clearly marked)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
aoi_app = typer.Typer(help="List and inspect areas of interest (configs/aois/*.yaml).", no_args_is_help=True)
app.add_typer(aoi_app, name="aoi")

console = Console(stderr=True)

ConfigOption = typer.Option(None, "--config", "-c", help="Config file (default: configs/default.yaml).")
DataDirOption = typer.Option(None, "--data-dir", help="Data directory (default: data_dir in the config).")


def user_errors(func):
    """Turn BasewatchError into one red line and exit code 2 (no traceback for a user mistake)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except BasewatchError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted; re-run the same command to resume[/]")
            raise typer.Exit(130) from None

    return wrapper


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages.")) -> None:
    level = logging.DEBUG if verbose else getattr(logging, os.environ.get("BASEWATCH_LOG", "INFO").upper(), 20)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("rasterio", "urllib3", "matplotlib", "PIL", "sentinelhub", "requests_oauthlib", "fiona"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


@aoi_app.command("list")
@user_errors
def aoi_list(config: Path | None = ConfigOption) -> None:
    """List the AOIs defined next to the config."""
    table = Table("name", "title", "zones", "roads", "UTM CRS", "grid (px)")
    for name in list_aoi_names(config):
        aoi = load_aoi(name, config)
        g = aoi.grid()
        table.add_row(name, aoi.title, str(len(aoi.zones)), str(len(aoi.roads)), aoi.crs.to_string(),
                      f"{g.width} x {g.height}")
    Console().print(table)


@aoi_app.command("show")
@user_errors
def aoi_show(name: str = typer.Argument(..., help="AOI name or path to an AOI YAML file."),
             config: Path | None = ConfigOption) -> None:
    """Show one AOI: outline, zones, egress roads (validates the file)."""
    aoi = load_aoi(name, config)
    out = Console()
    out.print(f"[bold]{aoi.title}[/] ({aoi.name}, {aoi.country}) — UTM {aoi.crs.to_string()}")
    out.print(f"outline bounds (lon/lat): {tuple(round(v, 4) for v in aoi.outline.bounds)}")
    table = Table("zone", "kind", "area (ha)")
    for z in aoi.zones:
        table.add_row(z.name, z.kind, f"{aoi.to_utm(z.polygon).area / 1e4:.1f}")
    out.print(table)
    for r in aoi.roads:
        out.print(f"road {r.name}: {aoi.to_utm(r.line).length:.0f} m, starts at the base")


@aoi_app.command("export")
@user_errors
def aoi_export(name: str = typer.Argument(..., help="AOI name or path to an AOI YAML file."),
               out: Path | None = typer.Option(None, "--out", "-o", help="GeoJSON to write "
                                               "(default: ./<name>.geojson)."),
               config: Path | None = ConfigOption) -> None:
    """Write an AOI as GeoJSON (outline, zones, egress roads; a 'role' property says which) to edit in QGIS."""
    from pipeline.aoi_geojson import export_aoi

    target, aoi = export_aoi(name, out, config)
    Console().print(f"wrote {target}: outline, {len(aoi.zones)} zones, {len(aoi.roads)} roads. Edit it in QGIS, "
                    f"then `basewatch aoi import {target} --force`")


@aoi_app.command("import")
@user_errors
def aoi_import(
    geojson: Path = typer.Argument(..., help="GeoJSON in lon/lat: one 'outline' polygon, 'zone' polygons (with "
                                   "'name' and 'kind') and 'road' lines (first vertex at the base), told apart by "
                                   "a 'role' property (what `basewatch aoi export` writes)."),
    name: str | None = typer.Option(None, "--name", help="AOI name (default: the outline's 'name' property)."),
    title: str | None = typer.Option(None, "--title", help="Title shown in reports (default: the outline's)."),
    country: str | None = typer.Option(None, "--country", help="Country (default: the outline's)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing AOI file of that name."),
    config: Path | None = ConfigOption,
) -> None:
    """Create or replace configs/aois/<name>.yaml from a GeoJSON drawn in QGIS (checked first: nothing is written
    unless the whole AOI is valid)."""
    from pipeline.aoi_geojson import advice, import_aoi

    target, aoi = import_aoi(geojson, name=name, title=title, country=country, force=force, config_path=config)
    out = Console()
    out.print(f"wrote {target}: {len(aoi.zones)} zones, {len(aoi.roads)} roads. Check it with "
              f"`basewatch aoi show {aoi.name}`; run it with `basewatch run --aoi {aoi.name}`")
    for note in advice(aoi):
        out.print(f"[yellow]note:[/] {note}", highlight=False)


@app.command("validate")
@user_errors
def validate(config: Path | None = ConfigOption) -> None:
    """Check the config, every AOI file in its AOI folder, the scenarios, the schedules' AOIs, the detector weights
    and the imagery source; list every problem (not just the first), exit 2 if there is any."""
    from pipeline.validate import validate_all

    checks = validate_all(config)
    out = Console()
    for check in checks:
        mark = "[green]ok[/]     " if check.ok else "[bold red]error[/]  "
        out.print(f"{mark}{check.what}: {check.detail}" + ("" if check.ok else f"\n         {check.problem}"),
                      highlight=False, soft_wrap=True)
    bad = [c for c in checks if not c.ok]
    if bad:
        out.print(f"[bold red]{len(bad)} problem(s)[/] in {len(checks)} checks", highlight=False)
        raise typer.Exit(2)
    out.print(f"all {len(checks)} checks passed", highlight=False)


# Commands from other modules register below (one line each, keep alphabetical).

from models import commands as _model_commands  # noqa: E402  (light: torch etc. load inside each command)

app.command("detect")(user_errors(_model_commands.detect))
app.command("evaluate")(user_errors(_model_commands.evaluate))
app.command("train")(user_errors(_model_commands.train))
app.command("train-heading")(user_errors(_model_commands.train_heading))
app.command("train-verifier")(user_errors(_model_commands.train_verifier))


@app.command("evaluate-scenarios")
@user_errors
def evaluate_scenarios_cmd(
    scenarios: list[Path] | None = typer.Argument(None, help="Scenario files (default: seed + seeds/scenarios/)."),
    config: Path | None = ConfigOption,
    data_dir: Path | None = typer.Option(None, "--data-dir", help="Where each scenario's store goes (default: temp)."),
    detector: str | None = typer.Option(
        None, "--detector", help="learned | classical | truth (simulator truth: checks the stages after detection)."
    ),
    weights: Path | None = typer.Option(None, "--weights", help="Learned-detector checkpoint to use instead of "
                                                                "detector.weights (compare a candidate)."),
    seeds: int = typer.Option(0, "--seeds", min=0, help="Also replay each scenario with seeds 1..N and print how "
                              "often each expectation held (robustness; ~10 s and, under --data-dir, ~120 MB of "
                              "scenes per replay)."),
    lookback_days: int = typer.Option(0, "--lookback-days", min=0, help="Start each replay N days before its "
                                      "scenario's start (the first phase's activity), so baselines are long as in "
                                      "scheduled runs (30 = diff.baseline_window_days); expectations unchanged."),
    first_seed: int = typer.Option(1, "--first-seed", min=1, help="Replay seeds FIRST..FIRST+N-1 instead of 1..N "
                                   "(extend a sweep, or keep seeds 1..N for tuning and check on the next ones)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, max=64, help="Run the seed replays in this many processes "
                             "(each detector gets its share of the cores)."),
    out: Path | None = typer.Option(None, "--out", help="Write every replay's outcome (expectations held, when they "
                                    "fired, column scores) as JSON."),
    compare: Path | None = typer.Option(None, "--compare", help="An earlier --out file: print which expectations "
                                        "held more or less often than there, and on which seeds (judge a candidate "
                                        "with --weights against the committed detector's replays)."),
    rederive: bool = typer.Option(False, "--rederive", help="With --data-dir: replays already stored there are "
                                  "not run again but re-derived with this config's diff and alerts settings "
                                  "(seconds each; tune those settings on replays detected once). Columns are not "
                                  "scored again."),
) -> None:
    """Replay each simulated scenario and check the alerts that fire against its expectations; exit 1 on a mismatch."""
    from pipeline.scenarios import evaluate_command

    if not evaluate_command(scenarios=scenarios or None, config_path=config, data_dir=data_dir, detector=detector,
                            weights=weights, seeds=seeds, lookback_days=lookback_days, jobs=jobs,
                            out=out, first_seed=first_seed, compare=compare, rederive=rederive):
        raise typer.Exit(1)


@app.command("run")
@user_errors
def run_cmd(
    config: Path | None = ConfigOption,
    data_dir: Path | None = DataDirOption,
    source: str | None = typer.Option(None, "--source", help="simulated | sentinelhub | files (default: config)."),
    aoi: list[str] | None = typer.Option(None, "--aoi", help="AOI to run (repeatable; default: scenario/config)."),
    start: datetime | None = typer.Option(None, "--start", formats=["%Y-%m-%d"], help="First day (YYYY-MM-DD)."),
    end: datetime | None = typer.Option(None, "--end", formats=["%Y-%m-%d"], help="Last day (YYYY-MM-DD)."),
    detector: str | None = typer.Option(None, "--detector", help="learned | classical (default: config)."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip writing the report folder."),
    scenario: Path | None = typer.Option(None, "--scenario", help="Scenario replayed on the simulated source."),
    reprocess: bool = typer.Option(
        False, "--reprocess", help="Process acquisitions already stored again (replacing them), so that changed "
        "detector, columns, diff or alerts settings reach the whole history; a run says when they changed."),
) -> None:
    """Fetch new acquisitions, detect, diff against the baseline, raise alerts and write a report (incremental).

    With no arguments and no credentials it replays the seed scenario on the SIMULATED source."""
    from pipeline.run import run_command

    run_command(config_path=config, data_dir=data_dir, source=source, aois=aoi, start=start.date() if start else None,
                end=end.date() if end else None, detector=detector, no_report=no_report, scenario=scenario,
                reprocess=reprocess)


@app.command("rederive")
@user_errors
def rederive_cmd(
    config: Path | None = ConfigOption,
    data_dir: Path | None = DataDirOption,
    aoi: list[str] | None = typer.Option(None, "--aoi", help="AOI to re-derive (repeatable; default: every stored)."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip writing the report folder."),
) -> None:
    """Apply changed diff/alerts settings to the stored history: counts, events and alerts are derived again from
    the stored detections (seconds; no scene is read or detected again).

    Detector or columns settings change what was detected, so they need `basewatch run --reprocess` instead."""
    from pipeline.rederive import rederive_command

    rederive_command(config_path=config, data_dir=data_dir, aois=aoi or None, no_report=no_report)


@app.command("report")
@user_errors
def report_cmd(
    run_id: str = typer.Argument("latest", help="Run id, or 'latest'."),
    config: Path | None = ConfigOption,
    data_dir: Path | None = DataDirOption,
) -> None:
    """Regenerate a run's report folder (HTML, JSON, GeoJSON, CSV, chips, plots) from the Store alone."""
    from pipeline.report import report_command

    folder = report_command(run_id, Path(data_dir or load_config(config).data_dir))
    Console().print(f"report: {folder / 'index.html'}")


@app.command("alerts")
@user_errors
def alerts_cmd(
    config: Path | None = ConfigOption,
    data_dir: Path | None = DataDirOption,
    aoi: str | None = typer.Option(None, "--aoi", help="Only this AOI."),
    include_closed: bool = typer.Option(False, "--all", help="Closed alerts too (default: open ones, new or updated)."),
    model: str | None = typer.Option(None, "--model", help="Alerts of this stored model (default: the newest run's)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table (for scripts)."),
) -> None:
    """List the store's current alerts, most severe first (reads the store only; nothing is fetched or detected)."""
    import json

    from rich.table import Table

    from pipeline.alert_list import list_alerts

    listing = list_alerts(Path(data_dir or load_config(config).data_dir), aoi=aoi, include_closed=include_closed,
                          model=model)
    out = Console()
    if as_json:
        out.print_json(json.dumps(listing.to_dict()))
        return
    if listing.simulated:
        out.print("[bold white on red] SIMULATED [/] these alerts come from simulated scenes, not from a satellite")
    title = f"{'all' if include_closed else 'open'} alerts, model {listing.model or '-'}"
    table = Table(title=title, box=None, pad_edge=False, padding=(0, 1, 0, 0), header_style="bold underline")
    for column in ("AOI", "kind", "severity", "conf.", "status", "seen (first..last)", "passes"):
        table.add_column(column, no_wrap=True)
    for a in listing.alerts:
        seen = f"{a.first_seen:%Y-%m-%d}..{a.last_seen:%m-%d}" if a.first_seen.year == a.last_seen.year \
            else f"{a.first_seen:%Y-%m-%d}..{a.last_seen:%Y-%m-%d}"
        table.add_row(a.aoi, a.kind, a.severity, f"{a.confidence:.2f}", a.status, seen, str(len(a.acquisitions)))
    out.print(table if listing.alerts else f"no {title}")
    if len(listing.models) > 1 and model is None:
        out.print(f"other models stored: {', '.join(listing.models[1:])} (--model)", highlight=False)


@app.command("simulate")
@user_errors
def simulate_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for <scene>.tif and <scene>.truth.geojson."),
    aoi: str | None = typer.Option(None, "--aoi", help="AOI name (configs/aois/<name>.yaml) or path."),
    day: datetime | None = typer.Option(None, "--date", formats=["%Y-%m-%d"], help="One day (YYYY-MM-DD)."),
    start: datetime | None = typer.Option(None, "--start", formats=["%Y-%m-%d"], help="First day of a window."),
    end: datetime | None = typer.Option(None, "--end", formats=["%Y-%m-%d"], help="Last day of a window."),
    seed: int | None = typer.Option(None, "--seed", help="Master seed (default: scenario's); same seed, same pixels."),
    scenario: Path | None = typer.Option(None, "--scenario", help="Scenario file (default: the seed scenario)."),
    held_out: int | None = typer.Option(None, "--held-out", help="Write N random evaluation scenes instead."),
    size: int = typer.Option(512, "--size", min=64, max=3000, help="Side of --held-out scenes (pixels, +-25%)."),
    config: Path | None = ConfigOption,
) -> None:
    """Write SIMULATED Sentinel-2 L2A scenes (GeoTIFF) and their ground truth (GeoJSON) for an AOI and dates."""
    from pipeline.simulate.command import simulate_command

    written = simulate_command(aoi, out, day.date() if day else None, start.date() if start else None,
                               end.date() if end else None, seed, scenario, held_out, config_path=config, size=size)
    for w in written:
        Console(soft_wrap=True).print(f"{w.scene}  ({w.objects} objects, {w.columns} columns)  truth: {w.truth.name}")


@app.command("convert")
@user_errors
def convert_cmd(
    inputs: list[str] = typer.Argument(..., help="A Sentinel-2 L2A product folder (unzipped .SAFE: bands, time, "
                                                 "scale and cloud mask from its metadata), one multi-band GeoTIFF, "
                                                 "or NAME=PATH per band (B02=a.tif B03=b.tif B04=c.tif B08=d.tif)."),
    out: Path = typer.Option(..., "--out", "-o", help="Interchange GeoTIFF to write (for detect, or a files "
                                                      "source folder)."),
    bands: str | None = typer.Option(None, "--bands", help="The multi-band file's bands in file order, '-' for one "
                                                           "not wanted, e.g. B04,B03,B02,B08 or B02,B03,B04,B08,-"
                                                           " (default: its band descriptions)."),
    when: datetime | None = typer.Option(None, "--datetime", formats=["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S",
                                                                       "%Y-%m-%dT%H:%MZ", "%Y-%m-%d"],
                                         help="Acquisition time, UTC (default: the file's ACQUISITION_DATETIME tag)."),
    scale: float | None = typer.Option(None, "--scale", help="Reflectance = value x scale + offset; needed for "
                                                             "digital numbers (Sentinel-2 L2A: 0.0001)."),
    offset: float = typer.Option(0.0, "--offset", help="See --scale (L2A from processing baseline 04.00: -0.1)."),
    nodata: float | None = typer.Option(None, "--nodata", help="Input value of pixels without data (default: the "
                                                               "file's nodata; NaN always is)."),
    spacecraft: str = typer.Option("Sentinel-2", "--spacecraft", help="Sentinel-2A, Sentinel-2B, ... (a tag)."),
    acquisition_id: str | None = typer.Option(None, "--id", help="Acquisition id (default: the output's name)."),
) -> None:
    """Turn your own Sentinel-2 GeoTIFF (a stack without band names, digital numbers, one file per band, longitude /
    latitude) into the interchange format that detect and the files source read; written in blocks, atomically."""
    from rich.progress import Progress

    from pipeline.ingest import ClassMask, ConvertOptions, band_inputs, convert
    from pipeline.safe import SCL_MASKED, is_safe, read_safe

    mask = None
    if len(inputs) == 1 and (is_safe(Path(inputs[0])) or inputs[0].endswith((".SAFE", ".SAFE/", ".zip"))):
        product = read_safe(Path(inputs[0]), nodata)  # everything else comes from the product's metadata
        sources, options = product.bands, product.options
        mask = ClassMask(product.scl, SCL_MASKED) if product.scl else None
    else:
        sources = band_inputs(inputs, bands)
        options = ConvertOptions(when=when, scale=scale, offset=offset, nodata=nodata, spacecraft=spacecraft,
                                 acquisition_id=acquisition_id)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("convert", total=None)
        result = convert(sources, out, options, progress=lambda done, total: bar.update(task, completed=done,
                                                                                        total=total), mask=mask)
    medians = ", ".join(f"{k} {v:.3f}" for k, v in result.band_medians.items())
    Console(soft_wrap=True).print(f"{result.path}: {result.width} x {result.height} px, {result.crs}, "
                                  f"{result.pixel_m:g} m, {result.valid_fraction:.0%} valid; median reflectance "
                                  f"{medians}")


@app.command("fetch")
@user_errors
def fetch_cmd(
    aoi: list[str] | None = typer.Option(None, "--aoi", help="AOI to fetch (repeatable; default: config aois)."),
    start: datetime | None = typer.Option(None, "--start", formats=["%Y-%m-%d"], help="First day (default: end-30)."),
    end: datetime | None = typer.Option(None, "--end", formats=["%Y-%m-%d"], help="Last day (default: today)."),
    max_cloud: float | None = typer.Option(None, "--max-cloud", help="Skip scenes cloudier than N % (default config)."),
    profile: str | None = typer.Option(None, "--profile", help="sentinelhub | cdse (default: config source.profile)."),
    config: Path | None = ConfigOption,
    data_dir: Path | None = DataDirOption,
) -> None:
    """Fetch Sentinel-2 L2A scenes through Sentinel Hub / CDSE into <data-dir>/cache/sentinelhub (incremental)."""
    from pipeline.sources.fetch import fetch_command

    fetch_command(config_path=config, data_dir=data_dir, aois=aoi, start=start.date() if start else None,
                  end=end.date() if end else None, max_cloud=max_cloud, profile=profile)


@app.command("emulator")
@user_errors
def emulator_cmd(
    port: int = typer.Option(8765, "--port", help="Port on 127.0.0.1 (0: any free port)."),
    client_id: str = typer.Option("basewatch-emulator", "--client-id", help="OAuth client id it accepts."),
    client_secret: str = typer.Option("emulator-secret", "--client-secret", help="OAuth client secret it accepts."),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulated pixels and cloud calendar."),
    scenario: Path | None = typer.Option(None, "--scenario", help="Scenario whose activity it renders."),
) -> None:
    """Run a local emulator of the Sentinel Hub APIs (token, Catalog, Process) serving SIMULATED pixels."""
    from pipeline.testing.sentinelhub_emulator import serve

    serve(port=port, client_id=client_id, client_secret=client_secret, seed=seed, scenario_path=scenario,
          print_fn=Console(soft_wrap=True, highlight=False).print)


@app.command("schedule")
@user_errors
def schedule_cmd(
    once: bool = typer.Option(False, "--once", help="Run every schedule once now and exit (cron / systemd timer)."),
    list_only: bool = typer.Option(False, "--list", help="Show the schedules and their next run times; run nothing."),
    name: list[str] | None = typer.Option(None, "--name", help="Only this schedule (repeatable; default: all)."),
    config: Path | None = ConfigOption,
    data_dir: Path | None = DataDirOption,
    source: str | None = typer.Option(None, "--source", help="simulated | sentinelhub | files (default: config)."),
    detector: str | None = typer.Option(None, "--detector", help="learned | classical (default: config)."),
    start: datetime | None = typer.Option(None, "--start", formats=["%Y-%m-%d"], help="First day (YYYY-MM-DD)."),
    end: datetime | None = typer.Option(None, "--end", formats=["%Y-%m-%d"], help="Last day (YYYY-MM-DD)."),
) -> None:
    """Run the config's cron schedules (UTC): incremental runs, reports, and notifications of new alerts only.

    One scheduler per data directory. Webhook URL from notify.webhook_url or BASEWATCH_WEBHOOK_URL; SMTP
    credentials from BASEWATCH_SMTP_USER / BASEWATCH_SMTP_PASSWORD."""
    from pipeline.schedule import schedule_command

    results = schedule_command(config_path=config, data_dir=data_dir, once=once, names=name or None, source=source,
                               detector=detector, start=start.date() if start else None,
                               end=end.date() if end else None, list_only=list_only)
    if any(not r.ok for r in results):
        raise typer.Exit(1)
