"""The Sentinel Hub source, driven through the real sentinelhub-py client against the local emulator.

Fast tests use a small AOI and the emulator's cheap pattern renderer; the acceptance test fetches the Khmeimim AOI
with pixels from basewatch's simulator and runs a detector on the result.
"""

from __future__ import annotations

import logging
import os
import warnings
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from shapely.geometry import box

from pipeline.config import SourceConfig, load_aoi, load_scenario
from pipeline.errors import AuthError, SourceError
from pipeline.geotiff import read_scene
from pipeline.sources.credentials import credentials_available, resolve_credentials
from pipeline.sources.sentinelhub import SentinelHubSource, group_passes, split_grid
from pipeline.testing.sentinelhub_emulator import SentinelHubEmulator, pattern_renderer
from pipeline.types import AOI, BAND_NAMES

TINY = AOI(name="tiny", title="tiny test AOI next to Khmeimim", outline=box(35.940, 35.392, 35.952, 35.402))
WINDOW = (date(2024, 12, 1), date(2024, 12, 20))  # passes on 3, 8, 13, 18 Dec; the 3rd is cloudier than 80 %
FAST = SourceConfig(max_retries=2, retry_backoff_s=0.01, timeout_s=0.6, max_concurrency=2, max_cloud=80)


@pytest.fixture(autouse=True)
def _quiet_rate_limit_warnings():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Download rate limit hit")
        yield


@pytest.fixture
def emulator(monkeypatch):
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "0")  # restored after the test; the source sets it to 1
    with SentinelHubEmulator(renderer=pattern_renderer, aois=[TINY], max_page=3) as emu:
        for key, value in emu.env().items():
            monkeypatch.setenv(key, value)
        yield emu


def make_source(tmp_path: Path, config: SourceConfig = FAST, **kwargs) -> SentinelHubSource:
    kwargs.setdefault("progress", False)
    return SentinelHubSource(config, tmp_path / "cache" / "sentinelhub", **kwargs)


def cache_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache").rglob("*"))


def test_search_merges_tiles_of_a_pass_and_follows_paging(tmp_path, emulator):
    acqs = make_source(tmp_path, catalog_page_size=2).search(TINY, *WINDOW)
    assert [a.id for a in acqs] == ["S2A_20241208T082541", "S2B_20241213T082541", "S2A_20241218T082541"]
    assert [a.sensor for a in acqs] == ["Sentinel-2A", "Sentinel-2B", "Sentinel-2A"]
    assert all(a.footprint is not None and a.footprint.contains(TINY.outline) for a in acqs)  # two tiles, merged
    assert all(a.cloud_cover is not None and a.cloud_cover <= 80 for a in acqs)
    assert emulator.catalog_requests == 3  # 6 tiles, pages of 2, paging followed to the end


def test_cloud_filter_is_sent_to_the_catalog(tmp_path, emulator):
    strict = make_source(tmp_path, FAST.model_copy(update={"max_cloud": 5.0})).search(TINY, *WINDOW)
    loose = make_source(tmp_path, FAST.model_copy(update={"max_cloud": 100.0})).search(TINY, *WINDOW)
    assert len(strict) < 3 < len(loose) == 4
    assert all(a.cloud_cover <= 5 for a in strict)


def test_fetch_writes_interchange_geotiffs_and_second_run_makes_no_process_requests(tmp_path, emulator):
    report = make_source(tmp_path).fetch_window(TINY, *WINDOW)
    assert len(report.fetched) == 3 and not report.cached and not report.failed
    assert emulator.process_requests == 3
    grid = TINY.grid()
    for acq_id, path in report.paths.items():
        assert path.parent == tmp_path / "cache" / "sentinelhub" / "tiny"
        assert path.name.startswith(f"{acq_id}-") and path.suffix == ".tif"
        with rasterio.open(path) as src:
            assert src.crs.to_epsg() == 32636 and src.res == (10.0, 10.0)
            assert src.descriptions == (*BAND_NAMES, "valid")
            tags = src.tags()
            assert tags["SIMULATED"] == "true"  # emulator pixels are never passed off as real imagery
            assert tags["SOURCE"] == "sentinelhub" and tags["ACQUISITION_ID"] == acq_id
            assert tags["SPACECRAFT"] in ("Sentinel-2A", "Sentinel-2B")
        scene = read_scene(path)
        assert (scene.width, scene.height, scene.transform) == (grid.width, grid.height, grid.transform)
        assert 0.05 < float(np.median(scene.band("B02")[scene.valid])) < 0.3  # reflectance, not DN
        assert scene.simulated

    emulator.reset_counters()
    again = make_source(tmp_path).fetch_window(TINY, *WINDOW)
    assert sorted(again.cached) == sorted(report.fetched) and not again.fetched
    assert emulator.process_requests == 0


def test_valid_mask_follows_scl_clouds_and_shadows(tmp_path, emulator):
    source = make_source(tmp_path)
    cloudy = next(a for a in source.search(TINY, *WINDOW) if a.cloud_cover > 20)
    scene = source.load(cloudy, TINY)
    assert 0.2 < 1 - scene.valid_fraction < 0.95  # the cloud bank is masked out
    assert float(scene.band("B02")[~scene.valid].mean()) > 0.4  # and it is the bright part


def test_large_aoi_is_split_into_tiles_and_mosaicked_seamlessly(tmp_path, emulator):
    acq = make_source(tmp_path).search(TINY, *WINDOW)[0]
    whole = make_source(tmp_path / "a").load(acq, TINY)
    assert emulator.process_requests == 1
    emulator.reset_counters()
    tiled_source = make_source(tmp_path / "b", max_tile_px=64)
    tiles = tiled_source.tile_requests(acq, TINY)
    assert len(tiles) == len(split_grid(TINY.grid(), 64)) >= 4
    tiled = tiled_source.load(acq, TINY)
    assert emulator.process_requests == len(tiles)
    np.testing.assert_array_equal(tiled.bands, whole.bands)
    np.testing.assert_array_equal(tiled.valid, whole.valid)


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500},
        {"status": 503},
        {"truncate": True},
        {"corrupt": True},
        {"delay_s": 1.5},
    ],
    ids=["500", "503", "truncated-body", "corrupt-tiff", "timeout"],
)
def test_transient_fault_is_survived(tmp_path, emulator, fault):
    emulator.inject("process", **fault)
    report = make_source(tmp_path).fetch_window(TINY, *WINDOW)
    assert len(report.fetched) == 3 and not report.failed
    assert emulator.process_requests == 4  # one retry
    assert all(read_scene(p).valid.any() for p in report.paths.values())


def test_token_expiry_mid_run_fetches_a_new_token(tmp_path, emulator):
    source = make_source(tmp_path, FAST.model_copy(update={"max_concurrency": 1}))
    acqs = source.search(TINY, *WINDOW)
    source.load(acqs[0], TINY)
    assert emulator.token_requests == 1
    emulator.inject("process", status=401)  # the token in use is revoked: as if it expired
    source.load(acqs[1], TINY)
    assert emulator.token_requests == 2
    assert emulator.process_requests == 3
    statuses = [r.status for r in emulator.records if r.endpoint == "process"]
    assert statuses == [200, 401, 200]


def test_429_waits_at_least_retry_after(tmp_path, emulator):
    emulator.inject("process", status=429, retry_after_ms=400)
    source = make_source(tmp_path, FAST.model_copy(update={"max_concurrency": 1}))
    acq = source.search(TINY, *WINDOW)[0]
    source.load(acq, TINY)
    process = [r for r in emulator.records if r.endpoint == "process"]
    assert [r.status for r in process] == [429, 200]
    assert process[1].started - process[0].finished >= 0.4


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ({"status": 500}, "HTTP 500"),
        ({"status": 429, "retry_after_ms": 5}, "rate limited"),
        ({"corrupt": True}, "not a readable GeoTIFF"),
        ({"delay_s": 1.0}, "no answer within"),
        ({"truncate": True}, "body was cut off"),
        ({"status": 401}, "refused the access token"),
    ],
    ids=["500", "429", "corrupt", "timeout", "truncated", "401"],
)
def test_persistent_fault_fails_clearly_and_rerun_fetches_only_what_is_missing(tmp_path, emulator, fault, words):
    first = make_source(tmp_path).fetch_window(TINY, date(2024, 12, 7), date(2024, 12, 9))
    assert len(first.fetched) == 1

    emulator.inject("process", times=-1, **fault)
    with pytest.raises(SourceError) as err:
        make_source(tmp_path).fetch_window(TINY, *WINDOW)
    message = str(err.value)
    assert "2 of 3 acquisitions" in message and words in message and "re-run" in message
    files = cache_files(tmp_path)
    assert [p.name for p in files if p.is_file()] == [p.name for p in first.paths.values()]  # no partial files

    emulator.clear_faults()
    emulator.reset_counters()
    rerun = make_source(tmp_path).fetch_window(TINY, *WINDOW)
    assert len(rerun.fetched) == 2 and len(rerun.cached) == 1
    assert emulator.process_requests == 2


def test_damaged_cache_file_is_refetched(tmp_path, emulator):
    report = make_source(tmp_path).fetch_window(TINY, date(2024, 12, 7), date(2024, 12, 9))
    path = next(iter(report.paths.values()))
    path.write_bytes(path.read_bytes()[:2000])
    emulator.reset_counters()
    again = make_source(tmp_path).fetch_window(TINY, date(2024, 12, 7), date(2024, 12, 9))
    assert again.fetched and emulator.process_requests == 1
    assert read_scene(path).valid.any()


def test_secrets_never_reach_logs_or_the_data_dir(tmp_path, emulator, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("requests_oauthlib", "requests_oauthlib.oauth2_session", "sentinelhub", "urllib3", "oauthlib"):
        caplog.set_level(logging.DEBUG, logger=name)
    source = make_source(tmp_path)
    emulator.inject("process", status=401)  # force a second token too
    report = source.fetch_window(TINY, *WINDOW)
    assert report.fetched and emulator.token_requests == 2
    assert "Obtained token" in caplog.text and "Request body was" in caplog.text  # the leaky DEBUG lines ran...
    assert "client_secret=***" in caplog.text and "***" in caplog.text  # ...and were redacted
    secrets = [emulator.client_secret, *emulator.issued_tokens()]
    assert len(secrets) == 3
    for secret in secrets:
        assert secret not in caplog.text
        assert secret not in repr(source.credentials) and secret not in repr(source.sh_config)
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path


def test_missing_credentials_say_what_to_set(tmp_path):
    with pytest.raises(AuthError) as err:
        make_source(tmp_path)
    message = str(err.value)
    for words in ("SH_CLIENT_ID", "SH_CLIENT_SECRET", "config.toml", "sentinelhub.config", "dataspace.copernicus.eu"):
        assert words in message
    assert not credentials_available(FAST)
    assert not (Path(os.environ["XDG_CONFIG_HOME"]) / "sentinelhub" / "config.toml").exists()  # nothing written


def test_only_the_secret_missing_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("SH_CLIENT_ID", "someone")
    with pytest.raises(AuthError, match=r"^SH_CLIENT_SECRET not set"):
        make_source(tmp_path)


def test_wrong_secret_is_an_auth_error(tmp_path, emulator, monkeypatch):
    monkeypatch.setenv("SH_CLIENT_SECRET", "not-the-secret")
    source = make_source(tmp_path)
    with pytest.raises(AuthError, match="refused the client credentials"):
        source.search(TINY, *WINDOW)
    assert emulator.catalog_requests == 0


def test_credentials_from_sentinelhub_config_file_and_profiles(monkeypatch):
    path = Path(os.environ["XDG_CONFIG_HOME"]) / "sentinelhub" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text('[default-profile]\n\n[work]\nsh_client_id = "file-id"\nsh_client_secret = "file-secret"\n')
    assert not credentials_available(SourceConfig())
    work = SourceConfig(sh_config_profile="work")
    assert credentials_available(work)
    creds = resolve_credentials("cdse", "work")
    assert (creds.client_id, creds.found_in) == ("file-id", "config file")
    assert creds.base_url == "https://sh.dataspace.copernicus.eu"
    assert creds.token_url.startswith("https://identity.dataspace.copernicus.eu/auth/realms/CDSE/")
    hub = resolve_credentials("sentinelhub", "work")
    assert hub.base_url == "https://services.sentinel-hub.com"
    assert hub.token_url == "https://services.sentinel-hub.com/auth/realms/main/protocol/openid-connect/token"
    assert "file-secret" not in repr(creds)
    monkeypatch.setenv("BASEWATCH_SH_BASE_URL", "http://127.0.0.1:9/")
    assert resolve_credentials("cdse", "work").base_url == "http://127.0.0.1:9"
    with pytest.raises(AuthError, match="not found"):
        resolve_credentials("cdse", "nope")


def test_process_requests_go_to_the_configured_service(tmp_path, emulator):
    source = make_source(tmp_path)
    acq = source.search(TINY, *WINDOW)[0]
    tile = source.tile_requests(acq, TINY)[0]
    assert tile.request.url == f"{emulator.base_url}/api/v1/process"
    data = tile.payload["input"]["data"][0]
    assert data["type"] == "sentinel-2-l2a" and data["processing"]["harmonizeValues"] is True
    assert tile.payload["input"]["bounds"]["properties"]["crs"] == "http://www.opengis.net/def/crs/EPSG/0/32636"
    assert "Authorization" not in tile.request.headers


def test_group_passes_keeps_spacecraft_and_days_apart():
    feats = [
        {"properties": {"datetime": "2024-12-13T08:25:41Z", "platform": "sentinel-2b", "eo:cloud_cover": 10}},
        {"properties": {"datetime": "2024-12-13T08:25:44Z", "platform": "sentinel-2b", "eo:cloud_cover": 20}},
        {"properties": {"datetime": "2024-12-13T08:25:44Z", "platform": "sentinel-2a", "eo:cloud_cover": 0}},
        {"properties": {"datetime": "2024-12-18T08:25:41Z", "platform": "sentinel-2a"}},
    ]
    acqs = group_passes(feats)
    assert [(a.sensor, a.cloud_cover) for a in acqs] == [("Sentinel-2B", 15.0), ("Sentinel-2A", 0.0),
                                                         ("Sentinel-2A", None)]


@pytest.mark.slow
def test_khmeimim_window_from_the_emulator_runs_through_a_detector(tmp_path, monkeypatch):
    """Acceptance: the real client fetches a window over Khmeimim; GeoTIFFs pass the interchange checks; a detector
    runs on them."""
    pytest.importorskip("pipeline.simulate.render", reason="the simulator renders the emulator's pixels")
    aoi = load_aoi("khmeimim")
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "0")
    with SentinelHubEmulator(scenario=load_scenario(), seed=7) as emu:
        for key, value in emu.env().items():
            monkeypatch.setenv(key, value)
        source = SentinelHubSource(SourceConfig(max_cloud=80), tmp_path / "cache" / "sentinelhub", progress=False)
        report = source.fetch_window(aoi, date(2024, 12, 7), date(2024, 12, 19))
        assert len(report.fetched) >= 2 and emu.process_requests == len(report.fetched)
        assert emu.catalog_requests >= 1
    grid = aoi.grid()
    covers = {a.id: a.cloud_cover for a in report.acquisitions}
    scenes = []
    for acq_id, path in report.paths.items():
        with rasterio.open(path) as src:
            assert src.crs.to_epsg() == 32636 and src.res == (10.0, 10.0) and src.dtypes[0] == "float32"
            assert src.descriptions == (*BAND_NAMES, "valid")
            tags = src.tags()
        assert tags["SIMULATED"] == "true" and tags["ACQUISITION_ID"] == acq_id
        assert tags["ACQUISITION_DATETIME"].endswith("Z") and tags["SPACECRAFT"].startswith("Sentinel-2")
        scene = read_scene(path)
        assert scene.grid == grid and scene.simulated and scene.band_names == BAND_NAMES
        assert 0.0 <= float(np.percentile(scene.bands[:, scene.valid], 50)) < 0.6  # reflectance
        scenes.append(scene)
    # the valid mask follows the clouds the catalog announced: cloudier pass, fewer valid pixels
    by_cover = sorted(scenes, key=lambda s: covers[s.acquisition.id])
    assert by_cover[0].valid_fraction > by_cover[-1].valid_fraction
    clearest = max(scenes, key=lambda s: s.valid_fraction)
    assert clearest.valid_fraction > 0.5
    try:
        from pipeline.classical import ClassicalDetector
    except ImportError:
        pytest.skip("pipeline.classical.ClassicalDetector is not in this checkout yet; fetch checks passed")
    detections = ClassicalDetector().detect(clearest)
    assert isinstance(detections, list)
    assert any(d.cls == "large_aircraft" for d in detections)  # the scenario parks transports on the aprons


def test_token_endpoint_outage_is_retried_then_reported(tmp_path, emulator):
    emulator.inject("token", status=503)
    assert len(make_source(tmp_path).search(TINY, *WINDOW)) == 3
    assert emulator.token_requests == 2
    emulator.inject("token", status=503, times=-1)
    with pytest.raises(SourceError, match=r"openid-connect/token: HTTP 503"):
        make_source(tmp_path).search(TINY, *WINDOW)


def test_short_lived_tokens_are_renewed_by_the_session(tmp_path, monkeypatch):
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "0")
    with SentinelHubEmulator(renderer=pattern_renderer, aois=[TINY], token_ttl_s=60) as emu:
        for key, value in emu.env().items():
            monkeypatch.setenv(key, value)
        report = make_source(tmp_path).fetch_window(TINY, *WINDOW)
        assert len(report.fetched) == 3
        # 60 s tokens are inside sentinelhub-py's 120 s refresh margin: a fresh token before every call, no 401
        assert emu.token_requests >= emu.catalog_requests + emu.process_requests
        assert all(r.status == 200 for r in emu.records if r.endpoint != "token")


def test_stale_partial_files_are_swept_and_ignored(tmp_path, emulator):
    folder = tmp_path / "cache" / "sentinelhub" / "tiny"
    folder.mkdir(parents=True)
    stale = folder / ".S2A_20241208T082541-0123456789ab.tif.abcd.part"
    stale.write_bytes(b"half a file")
    os.utime(stale, (0, 0))
    fresh = folder / ".S2B_20241213T082541-0123456789ab.tif.efgh.part"  # maybe another process writing right now
    fresh.write_bytes(b"being written")
    report = make_source(tmp_path).fetch_window(TINY, *WINDOW)
    assert len(report.fetched) == 3
    assert not stale.exists() and fresh.exists()


def test_cached_scenes_serve_the_files_source(tmp_path, emulator):
    from pipeline.sources.files import FilesSource

    report = make_source(tmp_path).fetch_window(TINY, *WINDOW)
    files = FilesSource(tmp_path / "cache" / "sentinelhub")
    found = files.search(TINY, *WINDOW)
    assert [a.id for a in found] == sorted(report.paths, key=lambda i: i.split("_")[1])
    assert files.simulated
    scene = files.load(found[0], TINY)
    cached = read_scene(report.paths[found[0].id])
    np.testing.assert_array_equal(scene.bands, cached.bands)


def test_no_acquisitions_is_not_an_error(tmp_path, emulator):
    source = make_source(tmp_path, FAST.model_copy(update={"max_cloud": 0.0}))
    report = source.fetch_window(TINY, date(2024, 12, 1), date(2024, 12, 2))
    assert report.acquisitions == [] and emulator.process_requests == 0


def test_acquisition_without_data_is_refused_and_not_cached(tmp_path, emulator):
    from dataclasses import replace as dc_replace
    from datetime import timedelta

    source = make_source(tmp_path)
    real = source.search(TINY, *WINDOW)[0]
    ghost = dc_replace(real, id="S2A_ghost", datetime=real.datetime + timedelta(days=1))
    with pytest.raises(SourceError, match="no data over tiny"):
        source.load(ghost, TINY)
    assert [p.suffix for p in cache_files(tmp_path) if p.is_file()] == [".nodata"]  # no scene, only the answer
    emulator.reset_counters()
    with pytest.raises(SourceError, match="answer cached"):
        source.load(ghost, TINY)
    assert emulator.process_requests == 0  # no processing units spent twice on nothing


def _http_failure(status: int, body: dict | str):
    import json as _json

    import requests
    from sentinelhub.exceptions import DownloadFailedException

    response = requests.Response()
    response.status_code = status
    response._content = (_json.dumps(body) if isinstance(body, dict) else body).encode()
    return DownloadFailedException("x", request_exception=requests.HTTPError(response=response))


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (400, "refused the request as invalid"),
        (401, "SH_CLIENT_ID / SH_CLIENT_SECRET"),
        (403, "processing units"),
        (404, "wrong service URL"),
        (500, "after 5 attempts"),
        (503, "after 5 attempts"),
    ],
)
def test_failure_messages_carry_url_server_message_and_hint(status, hint):
    from pipeline.sources.sentinelhub import describe_failure

    exc = _http_failure(status, {"error": {"status": status, "message": "the server's words", "code": "X"}})
    text = describe_failure(exc, "https://sh.example/api/v1/process", 5, 30)
    assert text.startswith(f"https://sh.example/api/v1/process: HTTP {status}: the server's words")
    assert hint in text


def test_failure_messages_for_timeouts_connections_and_rate_limits():
    import requests
    from sentinelhub.exceptions import DownloadFailedException, OutOfRequestsException

    from pipeline.sources.sentinelhub import describe_failure

    timeout = DownloadFailedException("x", request_exception=requests.ReadTimeout())
    assert "no answer within 30 s on 5 attempts" in describe_failure(timeout, "u", 5, 30)
    refused = DownloadFailedException("x", request_exception=requests.ConnectionError())
    assert "connection failed" in describe_failure(refused, "u", 5, 30)
    assert "rate limited (HTTP 429)" in describe_failure(OutOfRequestsException("x"), "u", 5, 30)
    oauth = _http_failure(401, {"error": "invalid_client", "error_description": "Invalid client credentials"})
    assert "invalid_client: Invalid client credentials" in describe_failure(oauth, "u", 1, 30)
    assert "HTTP 502: Bad Gateway page" in describe_failure(_http_failure(502, "Bad Gateway page"), "u", 1, 30)


def test_concurrency_is_bounded_and_a_shared_401_renews_the_token_once(tmp_path, emulator):
    emulator.inject("process", delay_s=0.3, times=3)
    source = make_source(tmp_path, FAST.model_copy(update={"max_concurrency": 2}))
    acqs = source.search(TINY, *WINDOW)
    report = source.fetch(TINY, acqs)
    assert len(report.fetched) == 3
    assert emulator.peak_concurrency("process") == 2  # parallel, but never more than max_concurrency

    from pipeline.sources.cache import SceneCache

    emulator.revoke_tokens()  # both workers of the same source hold a dead token now
    source.cache = SceneCache(tmp_path / "again")  # so everything is fetched again
    tokens_before = emulator.token_requests
    emulator.reset_counters()
    again = source.fetch(TINY, acqs)
    assert len(again.fetched) == 3 and emulator.token_requests == 1 and tokens_before == 1
    assert [r.status for r in emulator.records if r.endpoint == "process"].count(401) >= 1


def test_valid_mask_table_of_scl_classes_and_datamask():
    from pipeline.sources.sentinelhub import scene_from_stack
    from pipeline.types import Acquisition, GridSpec

    scl = np.arange(12, dtype=np.float32).reshape(1, 12)
    stack = np.concatenate([np.full((4, 1, 12), 0.1, np.float32), scl[None], np.ones((1, 1, 12), np.float32)])
    stack[5, 0, 4] = 0  # vegetation but outside the data footprint
    grid = GridSpec("EPSG:32636", TINY.grid().transform, 12, 1)
    acq = Acquisition(source="sentinelhub", id="x", sensor="Sentinel-2A", datetime=datetime(2024, 12, 13, tzinfo=UTC))
    scene = scene_from_stack(stack, grid, acq, simulated=False)
    assert scene.valid[0].tolist() == [False, False, True, False, False, True, True, True, False, False, False, True]
    assert np.isnan(scene.bands[:, 0, 4]).all() and not scene.simulated


def test_a_geotiff_without_the_emulator_marker_is_real_imagery(tmp_path):
    """What the real service returns (no emulator tag or header) is written with SIMULATED=false."""
    from rasterio.io import MemoryFile

    from pipeline.geotiff import write_scene
    from pipeline.sources.sentinelhub import TileRequest, scene_from_stack

    grid = TINY.grid()
    data = np.zeros((6, grid.height, grid.width), np.float32)
    data[:4] = 0.12
    data[4] = 4
    data[5] = 1
    with MemoryFile() as mem:
        with mem.open(driver="GTiff", width=grid.width, height=grid.height, count=6, dtype="float32",
                      crs=grid.crs, transform=grid.transform) as dst:
            dst.write(data)
        content = mem.read()
    tile = TileRequest(0, 0, grid.width, grid.height, request=None, payload={})
    decoded, from_emulator = SentinelHubSource._decode(content, {"Content-Type": "image/tiff"}, tile)
    assert not from_emulator
    acq = group_passes([{"properties": {"datetime": "2024-12-13T08:25:41Z", "platform": "sentinel-2b"}}])[0]
    path = write_scene(scene_from_stack(decoded, grid, acq, from_emulator), tmp_path / "real.tif")
    with rasterio.open(path) as src:
        assert src.tags()["SIMULATED"] == "false"
    assert SentinelHubSource._decode(content, {"X-Basewatch-Emulator": "simulated"}, tile)[1]
