"""Sentinel-2 L2A from the Sentinel Hub APIs (Sentinel Hub or CDSE) through the real sentinelhub-py client.

search: Catalog API (STAC) -> one Acquisition per pass (tiles of one pass merged), cloud filter, paging to the end.
load: Process API -> B02/B03/B04/B08 reflectance + SCL + dataMask on the AOI's UTM 10 m grid (split into tiles of at
most 2500 px), turned into an interchange GeoTIFF in the cache. Retries: sentinelhub-py's own (5xx, timeouts, broken
bodies; 429 Retry-After in milliseconds) plus ours for a body that arrives whole but does not decode, and one token
refresh on a 401. Scenes that came from the local emulator carry its marker and are tagged SIMULATED=true.
"""

from __future__ import annotations

import json
import logging
import threading
import time as time_module
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import TypeVar

import numpy as np
import requests
from oauthlib.oauth2.rfc6749.errors import OAuth2Error
from pyproj import CRS as ProjCRS
from rasterio.io import MemoryFile
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sentinelhub import (
    CRS,
    BBox,
    DataCollection,
    Geometry,
    MimeType,
    MosaickingOrder,
    SentinelHubCatalog,
    SentinelHubDownloadClient,
    SentinelHubRequest,
    SentinelHubSession,
)
from sentinelhub.download.client import DownloadClient
from sentinelhub.download.models import DownloadRequest
from sentinelhub.exceptions import DownloadFailedException, OutOfRequestsException
from shapely.geometry import shape
from shapely.ops import unary_union

from pipeline.atomic import write_text_atomic
from pipeline.config import SourceConfig
from pipeline.errors import AuthError, SourceError
from pipeline.geotiff import read_scene, write_scene
from pipeline.sources.cache import SceneCache, request_hash
from pipeline.sources.credentials import REDACTOR, Credentials, is_loopback_http, resolve_credentials
from pipeline.sources.evalscript import EVALSCRIPT, OUTPUT_BANDS, REFLECTANCE_BANDS, SCL_INVALID
from pipeline.types import AOI, Acquisition, GridSpec, Scene

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

MAX_PROCESS_PX = 2500
"""The Process API refuses outputs wider or taller than this."""
PASS_GAP = timedelta(minutes=10)
"""Catalog items (tiles) closer in time than this, from one spacecraft, belong to one pass."""
PASS_WINDOW = timedelta(minutes=10)
"""Process API time range around an acquisition: wide enough for all its tiles, far narrower than any revisit."""
EMULATOR_TAG = "BASEWATCH_EMULATOR"
EMULATOR_HEADER = "X-Basewatch-Emulator"


class NoDataError(SourceError):
    """The service answered, but with no data at all (dataMask 0 everywhere) for this acquisition and AOI."""


class CorruptDownload(Exception):
    """A response arrived complete at the HTTP level but is not the GeoTIFF we asked for."""


@dataclass(frozen=True)
class TileRequest:
    """One Process API call: a window of the AOI grid with its own bounds."""

    col_off: int
    row_off: int
    width: int
    height: int
    request: DownloadRequest = field(repr=False)
    payload: dict = field(repr=False)


@dataclass
class FetchReport:
    """What one fetch did, for the CLI and tests."""

    aoi: str
    acquisitions: list[Acquisition] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    paths: dict[str, Path] = field(default_factory=dict)


class _SharedClient(SentinelHubDownloadClient):
    """sentinelhub's download client, shared by our worker threads.

    The stock client creates its lock per ``download`` call; we keep one for good so the rate limiter (429
    Retry-After) and the session are shared safely by every thread.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lock = threading.Lock()

    def download(self, *args, **kwargs):
        return DownloadClient.download(self, *args, **kwargs)


class _Session(SentinelHubSession):
    """A sentinelhub session whose every token is registered with the log redactor."""

    def _collect_new_token(self):
        token = super()._collect_new_token()
        for key in ("access_token", "refresh_token"):
            REDACTOR.add(token.get(key))
        return token


def collection_for(base_url: str) -> DataCollection:
    """Sentinel-2 L2A bound to ``base_url``, so Process requests go there and not to the default service."""
    default = DataCollection.SENTINEL2_L2A
    if base_url.rstrip("/") == (default.service_url or "").rstrip("/"):
        return default
    import hashlib

    suffix = hashlib.sha1(base_url.rstrip("/").encode()).hexdigest()[:10].upper()
    return default.define_from(f"BASEWATCH_S2L2A_{suffix}", service_url=base_url.rstrip("/"))


def split_grid(grid: GridSpec, max_px: int = MAX_PROCESS_PX) -> list[tuple[int, int, int, int]]:
    """(col_off, row_off, width, height) windows of at most ``max_px`` per side covering the grid."""
    nx = max(1, -(-grid.width // max_px))
    ny = max(1, -(-grid.height // max_px))
    cols = np.linspace(0, grid.width, nx + 1).round().astype(int)
    rows = np.linspace(0, grid.height, ny + 1).round().astype(int)
    return [
        (int(cols[i]), int(rows[j]), int(cols[i + 1] - cols[i]), int(rows[j + 1] - rows[j]))
        for j in range(ny)
        for i in range(nx)
    ]


def sensor_name(platform: str | None) -> str:
    """'sentinel-2a' -> 'Sentinel-2A'."""
    p = (platform or "sentinel-2").strip()
    return "Sentinel-2" + p[len("sentinel-2") :].upper() if p.lower().startswith("sentinel-2") else p


def group_passes(features: Iterable[dict], source: str = "sentinelhub") -> list[Acquisition]:
    """Merge Catalog items (one per tile) into one Acquisition per pass, time-ordered."""
    items = []
    for f in features:
        props = f.get("properties", {})
        when = datetime.fromisoformat(props["datetime"].replace("Z", "+00:00")).astimezone(UTC)
        items.append((when, sensor_name(props.get("platform")), props.get("eo:cloud_cover"), f.get("geometry")))
    items.sort(key=lambda it: (it[0], it[1]))
    groups: list[list[tuple]] = []
    for item in items:
        for g in reversed(groups[-4:]):
            if g[0][1] == item[1] and item[0] - g[-1][0] <= PASS_GAP:
                g.append(item)
                break
        else:
            groups.append([item])
    acquisitions = []
    for g in groups:
        when, sensor = g[0][0], g[0][1]
        covers = [c for _, _, c, _ in g if c is not None]
        geoms = [shape(geom) for *_, geom in g if geom]
        acquisitions.append(
            Acquisition(
                source=source,
                id=f"S2{sensor[-1] if sensor[-1].isalpha() else ''}_{when:%Y%m%dT%H%M%S}",
                sensor=sensor,
                datetime=when,
                cloud_cover=float(np.mean(covers)) if covers else None,
                footprint=unary_union(geoms) if geoms else None,
            )
        )
    return sorted(acquisitions, key=lambda a: a.datetime)


def describe_failure(exc: BaseException, url: str | None, attempts: int, timeout_s: float) -> str:
    """One message for every download failure: what, where, what the server said, and what to do."""
    req_exc = getattr(exc, "request_exception", None) or (exc if isinstance(exc, requests.RequestException) else None)
    response = getattr(req_exc, "response", None)
    where = url or "the Sentinel Hub service"
    if isinstance(exc, OutOfRequestsException):
        return (
            f"{where}: rate limited (HTTP 429) on every one of {attempts} attempts; wait a minute and re-run "
            "(scenes already fetched stay cached), or lower source.max_concurrency"
        )
    if response is not None:
        status = response.status_code
        server = server_message(response)
        hint = {
            400: "the service refused the request as invalid; this is a basewatch bug or an unsupported AOI",
            401: "the service refused the access token; check SH_CLIENT_ID / SH_CLIENT_SECRET and the profile "
            "(cdse credentials do not work on services.sentinel-hub.com and vice versa)",
            403: "this OAuth client may not use this collection or has run out of processing units",
            404: "wrong service URL; check --profile or BASEWATCH_SH_BASE_URL",
        }.get(status, f"the service kept failing after {attempts} attempts; re-run later (fetched scenes stay cached)")
        return f"{where}: HTTP {status}: {server} — {hint}"
    if isinstance(req_exc, requests.Timeout):
        return (
            f"{where}: no answer within {timeout_s:g} s on {attempts} attempts; re-run later or raise "
            "source.timeout_s"
        )
    if isinstance(req_exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return (
            f"{where}: connection failed or the body was cut off on {attempts} attempts "
            f"({req_exc.__class__.__name__}); check the network and re-run (fetched scenes stay cached)"
        )
    return f"{where}: download failed: {exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def server_message(response: requests.Response) -> str:
    """The service's own words: ``error.message`` of its JSON (OAuth ``error_description``), else the raw text."""
    try:
        body = response.json()
    except ValueError:
        return (response.text or response.reason or "").strip()[:300]
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or err)[:300]
    if isinstance(body, dict) and "error_description" in body:
        return f"{err}: {body['error_description']}"
    return json.dumps(body)[:300]


def _status_of(exc: BaseException) -> int | None:
    response = getattr(getattr(exc, "request_exception", None), "response", None)
    return None if response is None else response.status_code


class SentinelHubSource:
    """Source protocol over the Sentinel Hub Catalog and Process APIs with an on-disk cache."""

    name = "sentinelhub"
    simulated = False

    def __init__(
        self,
        config: SourceConfig,
        cache_dir: Path,
        *,
        profile: str | None = None,
        credentials: Credentials | None = None,
        max_tile_px: int = MAX_PROCESS_PX,
        catalog_page_size: int = 100,
        progress: bool = True,
    ) -> None:
        self.config = config
        self.credentials = credentials or resolve_credentials(profile or config.profile, config.sh_config_profile)
        self.sh_config = self.credentials.sh_config(
            max_download_attempts=config.max_retries + 1,
            download_sleep_time=config.retry_backoff_s,
            download_timeout_seconds=config.timeout_s,
            max_retries=config.max_retries + 1,
            number_of_download_processes=config.max_concurrency,
        )
        self.collection = collection_for(self.credentials.base_url)
        self.cache = SceneCache(cache_dir)
        self.max_tile_px = min(int(max_tile_px), MAX_PROCESS_PX)
        self.catalog_page_size = int(catalog_page_size)
        self.progress = progress
        self._client: _SharedClient | None = None
        self._auth_lock = threading.Lock()
        # The real service is never on loopback; the emulator is. Catalog items and GeoTIFFs from the emulator carry
        # markers too (see search/_decode), so emulator pixels are never reported as real imagery.
        self.simulated = is_loopback_http(self.credentials.base_url)

    # ------------------------------------------------------------ session

    def _new_session(self) -> _Session:
        url = self.credentials.token_url
        try:
            return _Session(config=self.sh_config)
        except OAuth2Error as exc:
            raise AuthError(
                f"{url} refused the client credentials ({exc.error}); check SH_CLIENT_ID / SH_CLIENT_SECRET "
                f"(found in the {self.credentials.found_in}) and that the OAuth client belongs to the "
                f"'{self.credentials.profile}' profile"
            ) from None
        except DownloadFailedException as exc:
            attempts = self.sh_config.max_download_attempts
            raise SourceError(describe_failure(exc, url, attempts, self.config.timeout_s)) from None
        except requests.RequestException as exc:
            raise SourceError(describe_failure(exc, url, 1, self.config.timeout_s)) from None

    def client(self) -> _SharedClient:
        with self._auth_lock:
            if self._client is None:
                self._client = _SharedClient(config=self.sh_config, session=self._new_session())
            return self._client

    def _refresh_session(self, failed: SentinelHubSession | None) -> None:
        """Replace the session that got a 401 (once, however many threads saw it)."""
        with self._auth_lock:
            if self._client is not None and self._client.session is failed:
                LOGGER.info("access token refused (expired or revoked); fetching a new one")
                self._client.session = self._new_session()

    def _with_auth_retry(self, call: Callable[[], T], url: str) -> T:
        session = self.client().session
        try:
            return call()
        except DownloadFailedException as exc:
            if _status_of(exc) != 401 or isinstance(exc, OutOfRequestsException):
                raise
        self._refresh_session(session)
        return call()

    # ------------------------------------------------------------ search

    def search(self, aoi: AOI, start: date, end: date) -> list[Acquisition]:
        """Acquisitions over the AOI in [start, end] (UTC days, inclusive) under the cloud limit, time-ordered."""
        catalog = SentinelHubCatalog(config=self.sh_config)
        catalog.client = self.client()
        t0 = datetime.combine(start, dtime.min, tzinfo=UTC)
        t1 = datetime.combine(end, dtime(23, 59, 59), tzinfo=UTC)
        url = f"{self.credentials.base_url}/api/v1/catalog/1.0.0/search"

        def run() -> list[dict]:
            return list(
                catalog.search(
                    self.collection,
                    time=(t0, t1),
                    geometry=Geometry(aoi.outline, CRS.WGS84),
                    filter=f"eo:cloud_cover <= {float(self.config.max_cloud):g}",
                    limit=self.catalog_page_size,
                )
            )

        try:
            features = self._with_auth_retry(run, url)
        except DownloadFailedException as exc:
            attempts = self.sh_config.max_download_attempts
            message = describe_failure(exc, url, attempts, self.config.timeout_s)
            raise SourceError(f"catalog search: {message}") from None
        if any(f.get("properties", {}).get("basewatch:emulator") for f in features):
            self.simulated = True
        acquisitions = group_passes(features, self.name)
        LOGGER.info("catalog: %d tiles -> %d acquisitions over %s %s..%s (cloud <= %g%%)", len(features),
                    len(acquisitions), aoi.name, start, end, self.config.max_cloud)
        return acquisitions

    # ------------------------------------------------------------ requests

    def tile_requests(self, acquisition: Acquisition, aoi: AOI) -> list[TileRequest]:
        """The Process API requests that together cover the AOI grid for this acquisition."""
        grid = aoi.grid()
        epsg = ProjCRS.from_user_input(grid.crs).to_epsg()
        if epsg is None:
            raise SourceError(f"AOI {aoi.name}: grid CRS {grid.crs} has no EPSG code; Sentinel Hub needs one")
        when = acquisition.datetime.astimezone(UTC)
        input_data = SentinelHubRequest.input_data(
            self.collection,
            time_interval=(when - PASS_WINDOW, when + PASS_WINDOW),
            mosaicking_order=MosaickingOrder.MOST_RECENT,
            other_args={"processing": {"harmonizeValues": True}},
        )
        tiles = []
        t = grid.transform
        for col_off, row_off, width, height in split_grid(grid, self.max_tile_px):
            minx = t.c + col_off * t.a
            maxy = t.f + row_off * t.e
            bbox = BBox((minx, maxy + height * t.e, minx + width * t.a, maxy), crs=CRS(epsg))
            req = SentinelHubRequest(
                evalscript=EVALSCRIPT,
                input_data=[input_data],
                responses=[SentinelHubRequest.output_response("default", MimeType.TIFF)],
                bbox=bbox,
                size=(width, height),
                config=self.sh_config,
            )
            download = req.download_list[0]
            tiles.append(TileRequest(col_off, row_off, width, height, download, req.payload))
        return tiles

    def request_hash(self, tiles: list[TileRequest]) -> str:
        return request_hash([t.payload for t in tiles], self.credentials.base_url)

    def cache_path(self, acquisition: Acquisition, aoi: AOI) -> Path:
        return self.cache.path(aoi.name, acquisition.id, self.request_hash(self.tile_requests(acquisition, aoi)))

    # ------------------------------------------------------------ download

    def _download_tile(self, tile: TileRequest) -> tuple[np.ndarray, bool]:
        """(bands (6, h, w) float32, from_emulator) for one tile, with every retry we are responsible for."""
        attempts = self.config.max_retries + 1
        url = tile.request.url
        last: CorruptDownload | None = None
        for attempt in range(1, attempts + 1):
            try:
                response = self._with_auth_retry(
                    lambda: self.client().download([tile.request], max_threads=1, decode_data=False)[0], url
                )
            except DownloadFailedException as exc:
                raise SourceError(
                    describe_failure(exc, url, self.sh_config.max_download_attempts, self.config.timeout_s)
                ) from None
            try:
                return self._decode(response.content, response.headers, tile)
            except CorruptDownload as exc:
                last = exc
                if attempt < attempts:
                    delay = self.config.retry_backoff_s * (3 ** (attempt - 1))  # same growth as sentinelhub-py
                    LOGGER.warning("corrupt Process API response (%s); retry %d/%d in %.1f s", exc, attempt,
                                   attempts - 1, delay)
                    time_module.sleep(delay)
        raise SourceError(f"{url}: the response was not a readable GeoTIFF on {attempts} attempts ({last}); "
                          "re-run later (scenes already fetched stay cached)")

    @staticmethod
    def _decode(content: bytes, headers: dict, tile: TileRequest) -> tuple[np.ndarray, bool]:
        expected = (len(OUTPUT_BANDS), tile.height, tile.width)
        try:
            with MemoryFile(content) as mem, mem.open() as ds:
                data = ds.read().astype(np.float32)
                tags = ds.tags()
        except Exception as exc:  # rasterio raises several types for a cut or garbled body
            raise CorruptDownload(f"{len(content)} bytes, {exc.__class__.__name__}") from None
        if data.shape != expected:
            raise CorruptDownload(f"shape {data.shape}, expected {expected}")
        from_emulator = tags.get(EMULATOR_TAG, "").lower() == "true" or any(
            k.lower() == EMULATOR_HEADER.lower() for k in headers
        )
        return data, from_emulator

    def _fetch_scene(self, acquisition: Acquisition, aoi: AOI, tiles: list[TileRequest], workers: int) -> Scene:
        grid = aoi.grid()
        stack = np.full((len(OUTPUT_BANDS), grid.height, grid.width), np.nan, np.float32)
        simulated = False
        if workers <= 1 or len(tiles) == 1:
            results = [(tile, self._download_tile(tile)) for tile in tiles]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(self._download_tile, tile): tile for tile in tiles}
                results = [(futures[f], f.result()) for f in as_completed(futures)]
        for tile, (data, from_emulator) in results:
            stack[:, tile.row_off : tile.row_off + tile.height, tile.col_off : tile.col_off + tile.width] = data
            simulated |= from_emulator
        if not np.nan_to_num(stack[-1]).any():
            raise NoDataError(
                f"{acquisition.id}: the service has no data over {aoi.name} within {PASS_WINDOW} of "
                f"{acquisition.datetime:%Y-%m-%d %H:%M:%S} UTC (dataMask 0 everywhere)"
            )
        return scene_from_stack(stack, grid, acquisition, simulated)

    def _cached_scene(self, path: Path, acquisition: Acquisition) -> Scene:
        scene = read_scene(path)
        scene.acquisition = replace(acquisition, simulated=scene.simulated)
        self.simulated = self.simulated or scene.simulated
        return scene

    def load(self, acquisition: Acquisition, aoi: AOI) -> Scene:
        """The acquisition on the AOI grid: from the cache, else fetched (tiles in parallel) and cached."""
        scene, _, _ = self._load(acquisition, aoi, workers=self.config.max_concurrency)
        return scene

    def _load(self, acquisition: Acquisition, aoi: AOI, workers: int) -> tuple[Scene, bool, Path]:
        tiles = self.tile_requests(acquisition, aoi)
        req_hash = self.request_hash(tiles)
        cached = self.cache.lookup(aoi.name, acquisition.id, req_hash)
        if cached is not None:
            LOGGER.debug("cache hit %s", cached.name)
            return self._cached_scene(cached, acquisition), False, cached
        marker = self.cache.path(aoi.name, acquisition.id, req_hash).with_suffix(".nodata")
        if marker.exists():  # the service already said it has nothing here: do not spend processing units again
            raise SourceError(f"{marker.read_text(encoding='utf-8').strip()} (answer cached in {marker}; delete it "
                              "to ask the service again)")
        try:
            scene = self._fetch_scene(acquisition, aoi, tiles, workers)
        except NoDataError as exc:
            write_text_atomic(marker, str(exc))
            raise SourceError(f"{exc}; nothing cached but this answer. Use acquisitions from `search` (the "
                              "catalog) rather than hand-made ones") from None
        path = write_scene(scene, self.cache.path(aoi.name, acquisition.id, req_hash))
        LOGGER.info("fetched %s over %s (%d request%s, valid %.0f%%%s) -> %s", acquisition.id, aoi.name, len(tiles),
                    "" if len(tiles) == 1 else "s", 100 * scene.valid_fraction,
                    ", EMULATOR pixels" if scene.simulated else "", path.name)
        return self._cached_scene(path, acquisition), True, path

    def fetch(self, aoi: AOI, acquisitions: list[Acquisition]) -> FetchReport:
        """Fetch every acquisition not yet cached, ``max_concurrency`` at a time, with a progress bar.

        A failed acquisition does not stop the others; each one lands in the cache whole or not at all.
        """
        self.cache.sweep_partials(aoi.name)
        report = FetchReport(aoi=aoi.name, acquisitions=list(acquisitions))
        if not acquisitions:
            return report
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with (
            Progress(*columns, console=Console(stderr=True), transient=True, disable=not self.progress) as bar,
            ThreadPoolExecutor(max_workers=self.config.max_concurrency) as pool,
        ):
            task = bar.add_task(f"fetch {aoi.name}", total=len(acquisitions))
            futures = {pool.submit(self._load, acq, aoi, 1): acq for acq in acquisitions}
            for future in as_completed(futures):
                acq = futures[future]
                try:
                    _, fetched, path = future.result()
                    (report.fetched if fetched else report.cached).append(acq.id)
                    report.paths[acq.id] = path
                except AuthError:
                    raise
                except SourceError as exc:
                    report.failed[acq.id] = str(exc)
                    LOGGER.warning("%s: %s", acq.id, exc)
                bar.advance(task)
        return report

    def fetch_window(self, aoi: AOI, start: date, end: date) -> FetchReport:
        """Search then fetch; raises one SourceError naming what failed after fetching everything it could."""
        report = self.fetch(aoi, self.search(aoi, start, end))
        if report.failed:
            done = len(report.fetched) + len(report.cached)
            first_id, first_msg = next(iter(report.failed.items()))
            raise SourceError(
                f"{len(report.failed)} of {len(report.acquisitions)} acquisitions over {aoi.name} failed "
                f"({done} fetched or cached; re-run to fetch only the missing ones). First: {first_id}: {first_msg}"
            )
        return report




def scene_from_stack(stack: np.ndarray, grid: GridSpec, acquisition: Acquisition, simulated: bool) -> Scene:
    """(B02, B03, B04, B08, SCL, dataMask) -> Scene with the valid mask (no data, saturated, shadow, clouds out)."""
    refl = stack[: len(REFLECTANCE_BANDS)].copy()
    scl = np.nan_to_num(stack[len(REFLECTANCE_BANDS)], nan=0).round().astype(np.int16)
    data_mask = np.nan_to_num(stack[len(REFLECTANCE_BANDS) + 1], nan=0) > 0.5
    refl[:, ~data_mask] = np.nan
    valid = data_mask & ~np.isin(scl, SCL_INVALID) & np.all(np.isfinite(refl), axis=0)
    return Scene(
        bands=refl,
        band_names=REFLECTANCE_BANDS,
        transform=grid.transform,
        crs=grid.crs,
        valid=valid,
        acquisition=replace(acquisition, simulated=simulated),
        simulated=simulated,
    )
