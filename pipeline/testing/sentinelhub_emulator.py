"""A local emulator of the Sentinel Hub APIs (OAuth2 token, Catalog STAC search, Process API) on 127.0.0.1.

It validates requests like the service (status codes and its error JSON), follows a deterministic revisit calendar
(a pass every 5 days, S2A/S2B alternating, two tiles per pass, cloud cover per tile, paging), and answers Process
requests with GeoTIFFs rendered by basewatch's simulator for the requested bbox, CRS, size and time. Every GeoTIFF
it returns is marked (GDAL tag BASEWATCH_EMULATOR=true, SIMULATED=true and header X-Basewatch-Emulator) so emulator
pixels can never pass for real imagery.

Faults on demand: ``inject("process", status=429, retry_after_ms=200)``, ``status=500/503``, ``status=401`` (the token
presented is revoked: expiry mid-run), ``truncate=True`` (body cut off below its Content-Length), ``corrupt=True``
(a complete response whose GeoTIFF is cut), ``delay_s=...`` (answer later than the client's timeout).

The evalscript is not run by a JavaScript engine: the emulator reads the ``input`` bands and ``units``, the ``output``
bands and sampleType, and an ``evaluatePixel`` that returns ``[sample.BAND, ...]`` (optionally times a number).
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import logging
import re
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import numpy as np
from affine import Affine
from pyproj import CRS as ProjCRS
from rasterio.features import geometry_mask
from rasterio.io import MemoryFile
from shapely.geometry import box, mapping, shape

from pipeline.simulate.physics import derive_seed
from pipeline.types import AOI, BAND_NAMES, GridSpec, reproject_geometry

LOGGER = logging.getLogger(__name__)

COLLECTION = "sentinel-2-l2a"
MAX_PX = 2500
MAX_PAGE = 100
EMULATOR_TAG = "BASEWATCH_EMULATOR"
EMULATOR_HEADER = "X-Basewatch-Emulator"
CATALOG_PATH = "/api/v1/catalog/1.0.0/search"
PROCESS_PATH = "/api/v1/process"
TOKEN_PATH = "/auth/realms/main/protocol/openid-connect/token"
BOA_OFFSET_FROM = datetime(2022, 1, 25, tzinfo=UTC)
KNOWN_BANDS = (*BAND_NAMES, "SCL", "dataMask")


# ---------------------------------------------------------------- rendering


@dataclass
class RenderedPixels:
    """What a renderer gives the emulator: reflectance B02, B03, B04, B08 and where the sky was clear."""

    bands: np.ndarray
    valid: np.ndarray
    scl: np.ndarray | None = None


@dataclass(frozen=True)
class RenderRequest:
    """One pass to draw: the grid, when, the AOI under it (or None), the catalog's cloud cover, sensor and seed."""

    grid: GridSpec
    when: datetime
    aoi: AOI | None
    cloud_cover: float
    sensor: str
    seed: int


Renderer = Callable[[RenderRequest], RenderedPixels]


def _phase_for(scenario, aoi: AOI | None, when: datetime):
    """The scenario's activity phase for this AOI on this day (None: the simulator's generic routine)."""
    if scenario is None or aoi is None:
        return None
    for site in scenario.sites:
        if site.aoi == aoi.name:
            active = [p for p in site.phases if p.start <= when.date()]
            return active[-1] if active else site.phases[0]
    return None


def simulator_renderer(scenario=None) -> Renderer:
    """Pixels from basewatch's simulator (pipeline.simulate.render.render_grid), clouds matching the catalog."""
    from pipeline.simulate.render import render_grid

    def render(req: RenderRequest) -> RenderedPixels:
        terrain = derive_seed("emulator-terrain", req.aoi.name) if req.aoi is not None else None
        simulated = render_grid(req.grid, req.when, seed=req.seed, aoi=req.aoi,
                                activity=_phase_for(scenario, req.aoi, req.when),
                                cloud_fraction_override=req.cloud_cover / 100.0, sensor=req.sensor,
                                terrain_seed=terrain)
        scene = simulated.scene
        bands = np.stack([scene.band(b) for b in BAND_NAMES]).astype(np.float32)
        return RenderedPixels(bands=bands, valid=np.asarray(scene.valid, bool))

    return render


def pattern_renderer(req: RenderRequest) -> RenderedPixels:
    """A cheap deterministic renderer for fast tests: a smooth pattern fixed in map coordinates (so split requests
    mosaic seamlessly) and a cloud bank covering about the catalog's cloud fraction of the grid."""
    t = req.grid.transform
    xs = t.c + (np.arange(req.grid.width) + 0.5) * t.a
    ys = t.f + (np.arange(req.grid.height) + 0.5) * t.e
    x, y = np.meshgrid(xs, ys)
    base = 0.12 + 0.04 * np.sin(x / 137.0) * np.cos(y / 91.0) + 0.002 * (req.seed % 5)
    bands = np.stack([base, base * 1.1, base * 1.25, base * 2.0]).astype(np.float32)
    phase = np.sin(x / 700.0 + y / 900.0)
    valid = phase >= np.quantile(phase, min(max(req.cloud_cover / 100.0, 0.0), 1.0)) if req.cloud_cover > 0 \
        else np.ones(x.shape, bool)
    bands[:, ~valid] = 0.55
    return RenderedPixels(bands=bands, valid=valid)


def derive_scl(pixels: RenderedPixels) -> np.ndarray:
    """A plausible scene classification: clear land/vegetation/water, and cloud (9) or shadow (3) where not valid."""
    if pixels.scl is not None:
        return pixels.scl.astype(np.uint8)
    b02, b03, b04, b08 = pixels.bands
    ndvi = (b08 - b04) / np.maximum(b08 + b04, 1e-6)
    scl = np.full(b02.shape, 5, np.uint8)
    scl[ndvi > 0.35] = 4
    scl[(b08 < 0.06) & (b03 > b08)] = 6
    bright = (b02 + b03 + b04) / 3 > 0.2
    scl[~pixels.valid & bright] = 9
    scl[~pixels.valid & ~bright] = 3
    return scl


# ---------------------------------------------------------------- revisit calendar


@dataclass(frozen=True)
class Tile:
    id: str
    name: str
    datetime: datetime
    cloud_cover: float
    geometry: object


@dataclass(frozen=True)
class Pass:
    index: int
    datetime: datetime
    platform: str
    orbit: int
    cloud_cover: float


class RevisitCalendar:
    """Deterministic Sentinel-2 overpasses: one every ``revisit_days``, S2A and S2B alternating."""

    def __init__(self, first_pass: datetime, revisit_days: float = 5.0, seed: int = 0,
                 clear_every: int = 3) -> None:
        self.first_pass = first_pass.astimezone(UTC)
        self.step = timedelta(days=revisit_days)
        self.seed = seed
        self.clear_every = clear_every

    def cloud_cover(self, k: int) -> float:
        if self.clear_every and k % self.clear_every == 0:
            return round(float(np.random.default_rng(derive_seed("clear", self.seed, k)).uniform(0, 4)), 2)
        u = np.random.default_rng(derive_seed("cc", self.seed, k)).uniform()
        return round(100.0 * float(u) ** 1.6, 2)

    def passes(self, start: datetime, end: datetime) -> list[Pass]:
        k0 = int(np.ceil((start - self.first_pass) / self.step))
        out = []
        k = k0
        while True:
            when = self.first_pass + k * self.step
            if when > end:
                break
            if when >= start:
                out.append(Pass(k, when, "sentinel-2a" if k % 2 == 0 else "sentinel-2b", 21 + (k % 2) * 50,
                                self.cloud_cover(k)))
            k += 1
        return out

    def tiles(self, p: Pass, area) -> list[Tile]:
        """Two overlapping tiles per pass around ``area`` (lon/lat), a few seconds apart, cloud cover each."""
        minx, miny, maxx, maxy = area.bounds
        cx = (minx + maxx) / 2
        zone = int((cx + 180) // 6) + 1
        letter = "CDEFGHJKLMNPQRSTUVWXX"[int((miny + 80) // 8)] if -80 <= miny < 84 else "Z"
        sat = p.platform[-1].upper()
        shapes = [box(minx - 0.6, miny - 0.5, cx + 0.01, maxy + 0.5),
                  box(cx - 0.01, miny - 0.5, maxx + 0.6, maxy + 0.5)]
        names = [f"{zone:02d}{letter}YE", f"{zone + 1:02d}{letter}BV"]
        rng = np.random.default_rng(derive_seed("tiles", self.seed, p.index))
        tiles = []
        for i, (geom, name) in enumerate(zip(shapes, names, strict=True)):
            when = p.datetime + timedelta(seconds=3 * i)
            cover = float(np.clip(p.cloud_cover + rng.uniform(-3, 3), 0, 100)) if p.cloud_cover > 4 else p.cloud_cover
            tid = f"S2{sat}_MSIL2A_{when:%Y%m%dT%H%M%S}_N0511_R{p.orbit:03d}_T{name}_{when:%Y%m%d}T120000"
            tiles.append(Tile(tid, name, when, round(cover, 2), geom))
        return tiles


# ---------------------------------------------------------------- errors and faults


class ServiceError(Exception):
    """An error answer in the service's format."""

    REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
               415: "Unsupported Media Type", 429: "Too Many Requests", 500: "Internal Server Error",
               503: "Service Unavailable"}

    def __init__(self, status: int, message: str, code: str = "COMMON_BAD_PAYLOAD", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}

    def body(self) -> dict:
        return {"error": {"status": self.status, "reason": self.REASONS.get(self.status, "Error"),
                          "message": self.message, "code": self.code}}


@dataclass
class Fault:
    """One injected misbehaviour; ``times`` = -1 means every request from now on."""

    endpoint: str
    status: int | None = None
    retry_after_ms: int | None = None
    truncate: bool = False
    corrupt: bool = False
    delay_s: float = 0.0
    times: int = 1
    fired: int = 0


@dataclass
class RequestRecord:
    endpoint: str
    status: int
    started: float
    finished: float
    fault: str | None = None


@dataclass
class _State:
    tokens: dict[str, float] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    records: list[RequestRecord] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"token": 0, "catalog": 0, "process": 0})
    in_flight: dict[str, int] = field(default_factory=lambda: {"token": 0, "catalog": 0, "process": 0})
    peak: dict[str, int] = field(default_factory=lambda: {"token": 0, "catalog": 0, "process": 0})


# ---------------------------------------------------------------- evalscript


@dataclass(frozen=True)
class ParsedEvalscript:
    input_bands: tuple[str, ...]
    units: str | None
    output_bands: int
    sample_type: str
    terms: tuple[tuple[str, float], ...]


_RETURN_TERM = re.compile(r"^(?:([0-9.]+)\s*\*\s*)?(\w+)\.(\w+)(?:\s*\*\s*([0-9.]+))?$")


def parse_evalscript(script: str) -> ParsedEvalscript:
    """Read what an evalscript asks for; errors are the service's 400 'evalscript' answers."""
    if not isinstance(script, str) or not script.strip():
        raise ServiceError(400, "Invalid request: evalscript must be set", "COMMON_BAD_PAYLOAD")
    if "//VERSION=3" not in script.replace(" ", ""):
        raise ServiceError(400, "Failed to evaluate script! The emulator accepts only evalscript //VERSION=3",
                           "EXECUTION_ERROR")
    setup = re.search(r"function\s+setup\s*\(", script)
    evaluate = re.search(r"function\s+evaluatePixel\s*\(\s*(\w+)", script)
    if not setup or not evaluate:
        raise ServiceError(400, "Failed to evaluate script! evalscript needs setup() and evaluatePixel()",
                           "EXECUTION_ERROR")
    inputs = re.search(r"input\s*:\s*\[?\s*\{[^}]*?bands\s*:\s*\[([^\]]*)\]", script, re.S) or re.search(
        r"input\s*:\s*\[([^\]{]*)\]", script, re.S)
    if not inputs:
        raise ServiceError(400, "Failed to evaluate script! setup() must declare input bands", "EXECUTION_ERROR")
    bands = tuple(re.findall(r"[\"'](\w+)[\"']", inputs.group(1)))
    unknown = [b for b in bands if b not in KNOWN_BANDS]
    if unknown:
        raise ServiceError(400, f"Failed to evaluate script! Unknown band(s) {unknown} for {COLLECTION} in this "
                                f"emulator (it renders {list(KNOWN_BANDS)})", "EXECUTION_ERROR")
    units = re.search(r"units\s*:\s*[\"'](\w+)[\"']", script)
    output = re.search(r"output\s*:\s*\[?\s*\{([^}]*)\}", script, re.S)
    if not output:
        raise ServiceError(400, "Failed to evaluate script! setup() must declare output", "EXECUTION_ERROR")
    n_out = re.search(r"bands\s*:\s*(\d+)", output.group(1))
    sample = re.search(r"sampleType\s*:\s*(?:SampleType\.)?[\"']?(\w+)", output.group(1))
    body = script[evaluate.end():]
    ret = re.search(r"return\s*\[([^\]]*)\]", body, re.S)
    if not ret:
        raise ServiceError(400, "Failed to evaluate script! evaluatePixel must return an array (emulator: "
                                "`return [sample.B02, ...]`)", "EXECUTION_ERROR")
    var = evaluate.group(1)
    terms = []
    for raw in ret.group(1).split(","):
        m = _RETURN_TERM.match(raw.strip())
        if not m or m.group(2) != var or m.group(3) not in bands:
            raise ServiceError(400, f"Failed to evaluate script! evaluatePixel returns {raw.strip()!r}; the emulator "
                                    f"understands `{var}.BAND` of declared input bands, optionally times a number",
                               "EXECUTION_ERROR")
        factor = float(m.group(1) or 1.0) * float(m.group(4) or 1.0)
        terms.append((m.group(3), factor))
    n = int(n_out.group(1)) if n_out else len(terms)
    if n != len(terms):
        raise ServiceError(400, f"Failed to evaluate script! Output default expects {n} bands but evaluatePixel "
                                f"returns {len(terms)}", "EXECUTION_ERROR")
    sample_type = (sample.group(1) if sample else "AUTO").upper()
    if sample_type not in ("AUTO", "UINT8", "UINT16", "FLOAT32", "INT8", "INT16"):
        raise ServiceError(400, f"Failed to evaluate script! Unknown sampleType {sample_type}", "EXECUTION_ERROR")
    return ParsedEvalscript(bands, units.group(1).upper() if units else None, n, sample_type, tuple(terms))


# ---------------------------------------------------------------- the emulator


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _parse_time(text: str, what: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ServiceError(400, f"Invalid {what}: {text!r} is not an ISO 8601 date-time") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class SentinelHubEmulator:
    """Context manager that serves the emulated APIs on 127.0.0.1 from a background thread."""

    def __init__(
        self,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        renderer: Renderer | None = None,
        seed: int = 0,
        scenario=None,
        first_pass: datetime = datetime(2024, 11, 28, 8, 25, 41, tzinfo=UTC),
        revisit_days: float = 5.0,
        token_ttl_s: float = 3600.0,
        max_px: int = MAX_PX,
        max_page: int = MAX_PAGE,
        aois: list[AOI] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.client_id = client_id or f"emulator-{secrets.token_hex(4)}"
        self.client_secret = client_secret or secrets.token_urlsafe(24)
        self.seed = seed
        self.scenario = scenario
        self._renderer = renderer
        self.calendar = RevisitCalendar(first_pass, revisit_days, seed)
        self.token_ttl_s = token_ttl_s
        self.max_px = max_px
        self.max_page = max_page
        self.host, self.port = host, port
        self._aois = aois
        self._state = _State()
        self._lock = threading.Lock()
        self._render_cache: OrderedDict[tuple, RenderedPixels] = OrderedDict()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> SentinelHubEmulator:
        if self._renderer is None:
            try:
                self._renderer = simulator_renderer(self.scenario)
            except ImportError as exc:
                raise RuntimeError(f"the simulator is not available ({exc}); pass renderer=") from None
        if self._aois is None:
            self._aois = _load_project_aois()
        handler = type("Handler", (_Handler,), {"emulator": self})
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="sh-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SentinelHubEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}{TOKEN_PATH}"

    def env(self) -> dict[str, str]:
        """Environment that points basewatch (and sentinelhub-py) at this emulator."""
        return {"SH_CLIENT_ID": self.client_id, "SH_CLIENT_SECRET": self.client_secret,
                "BASEWATCH_SH_BASE_URL": self.base_url, "BASEWATCH_SH_TOKEN_URL": self.token_url}

    # ------------------------------------------------------------ counters and faults

    @property
    def token_requests(self) -> int:
        return self._state.counts["token"]

    @property
    def catalog_requests(self) -> int:
        return self._state.counts["catalog"]

    @property
    def process_requests(self) -> int:
        return self._state.counts["process"]

    @property
    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._state.records)

    def issued_tokens(self) -> list[str]:
        """Every access token handed out so far (revoked ones included), for leak checks."""
        with self._lock:
            return list(self._state.issued)

    def peak_concurrency(self, endpoint: str = "process") -> int:
        """Most requests to ``endpoint`` ever being answered at the same time."""
        with self._lock:
            return self._state.peak[endpoint]

    def reset_counters(self) -> None:
        with self._lock:
            self._state.counts = {k: 0 for k in self._state.counts}
            self._state.peak = {k: 0 for k in self._state.peak}
            self._state.records.clear()

    def inject(self, endpoint: str, *, status: int | None = None, retry_after_ms: int | None = None,
               truncate: bool = False, corrupt: bool = False, delay_s: float = 0.0, times: int = 1) -> Fault:
        """Queue a fault for the next ``times`` requests to ``endpoint`` ('token', 'catalog' or 'process')."""
        if endpoint not in self._state.counts:
            raise ValueError(f"endpoint must be one of {list(self._state.counts)}")
        fault = Fault(endpoint, status, retry_after_ms, truncate, corrupt, delay_s, times)
        with self._lock:
            self._state.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._lock:
            self._state.faults.clear()

    def revoke_tokens(self) -> None:
        """Every issued token stops working (as if they all expired)."""
        with self._lock:
            self._state.tokens.clear()

    def _next_fault(self, endpoint: str) -> Fault | None:
        with self._lock:
            for fault in self._state.faults:
                if fault.endpoint == endpoint and (fault.times < 0 or fault.fired < fault.times):
                    fault.fired += 1
                    return fault
        return None

    def _count(self, endpoint: str) -> None:
        with self._lock:
            self._state.counts[endpoint] += 1
            self._state.in_flight[endpoint] += 1
            self._state.peak[endpoint] = max(self._state.peak[endpoint], self._state.in_flight[endpoint])

    def _done(self, endpoint: str) -> None:
        with self._lock:
            self._state.in_flight[endpoint] -= 1

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._state.records.append(record)

    # ------------------------------------------------------------ token endpoint

    def issue_token(self, form: dict[str, list[str]], basic: tuple[str, str] | None) -> dict:
        grant = form.get("grant_type", [""])[0]
        if not grant:
            raise _OAuthError(400, "invalid_request", "Missing form parameter: grant_type")
        if grant != "client_credentials":
            raise _OAuthError(400, "unsupported_grant_type", "Unsupported grant_type")
        cid, secret = basic or (form.get("client_id", [""])[0], form.get("client_secret", [""])[0])
        if not secrets.compare_digest(cid.encode(), self.client_id.encode()) or not secrets.compare_digest(
                secret.encode(), self.client_secret.encode()):
            raise _OAuthError(401, "invalid_client", "Invalid client or Invalid client credentials")
        now = time.time()
        header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "emulator"}).encode())
        claims = {"exp": int(now + self.token_ttl_s), "iat": int(now), "jti": str(uuid.uuid4()), "azp": cid,
                  "iss": self.base_url, "typ": "Bearer", "sub": "emulator-user"}
        token = f"{header}.{_b64url(json.dumps(claims).encode())}.{_b64url(secrets.token_bytes(32))}"
        with self._lock:
            self._state.tokens[token] = now + self.token_ttl_s
            self._state.issued.append(token)
        return {"access_token": token, "expires_in": int(self.token_ttl_s), "refresh_expires_in": 0,
                "token_type": "Bearer", "not-before-policy": 0}

    def check_bearer(self, header: str | None) -> str:
        if not header or not header.startswith("Bearer "):
            raise ServiceError(401, "You are not authorized! Please provide a valid access token within the header "
                                    "[Authorization: Bearer <accessToken>] of your request.", "COMMON_UNAUTHORIZED")
        token = header[len("Bearer "):].strip()
        with self._lock:
            expires = self._state.tokens.get(token)
        if expires is None or expires < time.time():
            raise ServiceError(401, "The access token is invalid or has expired; request a new one.",
                               "COMMON_UNAUTHORIZED")
        return token

    def revoke(self, token: str) -> None:
        with self._lock:
            self._state.tokens.pop(token, None)

    # ------------------------------------------------------------ catalog

    def catalog_search(self, body: dict) -> dict:
        collections = body.get("collections")
        if collections != [COLLECTION]:
            raise ServiceError(400, f"collections must be [\"{COLLECTION}\"] (the emulator serves only Sentinel-2 "
                                    f"L2A), got {collections!r}")
        limit = body.get("limit", 10)
        if not isinstance(limit, int) or not 1 <= limit <= 100:
            raise ServiceError(400, "limit must be an integer between 1 and 100")
        limit = min(limit, self.max_page)
        if "intersects" in body:
            try:
                area = shape(body["intersects"])
            except Exception:
                raise ServiceError(400, "intersects is not a valid GeoJSON geometry") from None
        elif "bbox" in body:
            bb = body["bbox"]
            if not (isinstance(bb, list) and len(bb) == 4 and bb[0] < bb[2] and bb[1] < bb[3]):
                raise ServiceError(400, "bbox must be [minLon, minLat, maxLon, maxLat]")
            area = box(*bb)
        else:
            raise ServiceError(400, "one of bbox or intersects is required by this emulator")
        start, end = self._interval(body.get("datetime"))
        max_cc = _cloud_filter(body.get("filter"), body.get("filter-lang", "cql2-text"))
        features = []
        for p in self.calendar.passes(start, end):
            for tile in self.calendar.tiles(p, area):
                if tile.geometry.intersects(area) and (max_cc is None or max_cc(tile.cloud_cover)):
                    features.append(self._feature(tile, p))
        offset = body.get("next", 0) or 0
        if not isinstance(offset, int) or offset < 0:
            raise ServiceError(400, "next must be the token from the previous page")
        page = features[offset:offset + limit]
        context = {"limit": limit, "returned": len(page)}
        links = []
        if offset + limit < len(features):
            context["next"] = offset + limit
            links.append({"href": f"{self.base_url}{CATALOG_PATH}", "rel": "next", "type": "application/geo+json",
                          "method": "POST", "body": {"next": offset + limit}, "merge": True})
        return {"type": "FeatureCollection", "features": page, "links": links, "context": context}

    @staticmethod
    def _interval(text) -> tuple[datetime, datetime]:
        if text is None:
            return datetime(2015, 6, 23, tzinfo=UTC), datetime.now(UTC)
        if not isinstance(text, str):
            raise ServiceError(400, "datetime must be an RFC 3339 date-time or interval string")
        parts = text.split("/")
        if len(parts) == 1:
            t = _parse_time(parts[0], "datetime")
            return t, t
        if len(parts) != 2:
            raise ServiceError(400, f"datetime {text!r} is not an interval start/end")
        start = datetime(2015, 6, 23, tzinfo=UTC) if parts[0] in ("", "..") else _parse_time(parts[0], "datetime")
        end = datetime.now(UTC) if parts[1] in ("", "..") else _parse_time(parts[1], "datetime")
        if end < start:
            raise ServiceError(400, "datetime interval ends before it starts")
        return start, end

    def _feature(self, tile: Tile, p: Pass) -> dict:
        geom = tile.geometry
        return {
            "stac_version": "1.0.0",
            "type": "Feature",
            "id": tile.id,
            "collection": COLLECTION,
            "geometry": mapping(geom),
            "bbox": list(geom.bounds),
            "properties": {
                "datetime": tile.datetime.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
                "platform": p.platform,
                "instruments": ["msi"],
                "constellation": "sentinel-2",
                "gsd": 10,
                "eo:cloud_cover": tile.cloud_cover,
                "s2:mgrs_tile": tile.name,
                "basewatch:emulator": True,
            },
            "assets": {},
            "links": [],
        }

    # ------------------------------------------------------------ process

    def process(self, body: dict) -> tuple[bytes, dict[str, str]]:
        """Validate a Process API request and render its GeoTIFF."""
        script = parse_evalscript(body.get("evalscript"))
        inp = body.get("input")
        if not isinstance(inp, dict) or not isinstance(inp.get("bounds"), dict):
            raise ServiceError(400, "Invalid request: input.bounds must be set")
        bounds = inp["bounds"]
        crs_text = (bounds.get("properties") or {}).get("crs", "http://www.opengis.net/def/crs/OGC/1.3/CRS84")
        epsg = _epsg_of(crs_text)
        if "bbox" in bounds:
            bb = bounds["bbox"]
            if not (isinstance(bb, list) and len(bb) == 4 and all(isinstance(v, int | float) for v in bb)
                    and bb[0] < bb[2] and bb[1] < bb[3]):
                raise ServiceError(400, "Invalid request: bounds.bbox must be [minX, minY, maxX, maxY]")
        if "geometry" in bounds:
            try:
                clip = shape(bounds["geometry"])
            except Exception:
                raise ServiceError(400, "Invalid request: bounds.geometry is not valid GeoJSON") from None
            if clip.is_empty or not clip.is_valid:
                raise ServiceError(400, "Invalid request: bounds.geometry is empty or not valid")
            if "bbox" not in bounds:
                bb = list(clip.bounds)
        else:
            clip = None
        if "bbox" not in bounds and clip is None:
            raise ServiceError(400, "Invalid request: bounds needs bbox or geometry")
        data = inp.get("data")
        if not isinstance(data, list) or len(data) != 1 or not isinstance(data[0], dict):
            raise ServiceError(400, "Invalid request: input.data must list exactly one data source in this emulator")
        source = data[0]
        if source.get("type") not in (COLLECTION, "S2L2A"):
            raise ServiceError(400, f"Invalid request: unknown data type {source.get('type')!r}; the emulator "
                                    f"serves {COLLECTION}")
        flt = source.get("dataFilter") or {}
        time_range = flt.get("timeRange") or {}
        if not time_range.get("from") or not time_range.get("to"):
            raise ServiceError(400, "Invalid request: dataFilter.timeRange needs from and to")
        t0, t1 = _parse_time(time_range["from"], "timeRange.from"), _parse_time(time_range["to"], "timeRange.to")
        harmonize = (source.get("processing") or {}).get("harmonizeValues", True)
        out = body.get("output") or {}
        width, height = self._output_size(out, bb)
        responses = out.get("responses") or [{"identifier": "default", "format": {"type": "image/tiff"}}]
        if len(responses) != 1:
            raise ServiceError(400, "Invalid request: the emulator answers exactly one response (no TAR)")
        fmt = (responses[0].get("format") or {}).get("type", "image/tiff")
        if fmt != "image/tiff":
            raise ServiceError(400, f"Invalid request: the emulator renders only image/tiff, not {fmt}")
        transform = Affine((bb[2] - bb[0]) / width, 0, bb[0], 0, -(bb[3] - bb[1]) / height, bb[3])
        grid = GridSpec(crs=f"EPSG:{epsg}", transform=transform, width=width, height=height)
        chosen = self._choose_pass(t0, t1, flt.get("mosaickingOrder", "mostRecent"), flt.get("maxCloudCoverage"))
        stack = self._render_stack(grid, chosen, script, harmonize, clip)
        return _geotiff(stack, grid, chosen), {EMULATOR_HEADER: "simulated"}

    def _output_size(self, out: dict, bb: list[float]) -> tuple[int, int]:
        if "width" in out or "height" in out:
            width, height = out.get("width"), out.get("height")
        elif "resx" in out and "resy" in out:
            try:
                width = int(round((bb[2] - bb[0]) / float(out["resx"])))
                height = int(round((bb[3] - bb[1]) / float(out["resy"])))
            except (TypeError, ValueError, ZeroDivisionError):
                raise ServiceError(400, "Invalid request: output.resx/resy must be positive numbers") from None
        else:
            width = height = 256
        if not isinstance(width, int) or not isinstance(height, int) or width < 1 or height < 1:
            raise ServiceError(400, "Invalid request: output width and height must be positive integers")
        if width > self.max_px or height > self.max_px:
            raise ServiceError(
                400, f"Your request of {width:.2f} x {height:.2f} pixels exceeds the limit "
                     f"{self.max_px:.2f}x{self.max_px:.2f} pixels.", "RENDERER_EXCEPTION")
        return width, height

    def _choose_pass(self, t0: datetime, t1: datetime, order: str, max_cc) -> Pass | None:
        passes = self.calendar.passes(t0 - timedelta(seconds=10), t1)
        passes = [p for p in passes if p.datetime <= t1 and p.datetime + timedelta(seconds=3) >= t0]
        if max_cc is not None:
            passes = [p for p in passes if p.cloud_cover <= float(max_cc)]
        if not passes:
            return None
        if order == "leastRecent":
            return passes[0]
        if order == "leastCC":
            return min(passes, key=lambda p: p.cloud_cover)
        return passes[-1]

    def _aoi_for(self, grid: GridSpec) -> AOI | None:
        area = reproject_geometry(box(*grid.bounds), grid.crs, "EPSG:4326")
        best, best_overlap = None, 0.0
        for aoi in self._aois or []:
            overlap = aoi.outline.intersection(area).area
            if overlap > best_overlap:
                best, best_overlap = aoi, overlap
        return best

    def _render(self, grid: GridSpec, p: Pass) -> RenderedPixels:
        """Pixels for ``grid``; inside an AOI, cut from one rendering of the whole AOI so tiles of a split request
        fit together like the service's do."""
        aoi = self._aoi_for(grid)
        if aoi is not None:
            full = aoi.grid()
            offset = grid.offset_in(full)
            if offset is not None:
                whole = self._render_cached(full, p, aoi)
                r0, c0 = offset
                return RenderedPixels(whole.bands[:, r0:r0 + grid.height, c0:c0 + grid.width],
                                      whole.valid[r0:r0 + grid.height, c0:c0 + grid.width],
                                      None if whole.scl is None else whole.scl[r0:r0 + grid.height,
                                                                               c0:c0 + grid.width])
        return self._render_cached(grid, p, aoi)

    def _render_cached(self, grid: GridSpec, p: Pass, aoi: AOI | None) -> RenderedPixels:
        key = (grid.crs, tuple(grid.transform), grid.width, grid.height, p.index)
        with self._lock:
            if key in self._render_cache:
                self._render_cache.move_to_end(key)
                return self._render_cache[key]
        sensor = "Sentinel-2A" if p.platform.endswith("a") else "Sentinel-2B"
        pixels = self._renderer(RenderRequest(grid, p.datetime, aoi, p.cloud_cover, sensor,
                                              derive_seed("emulator-pass", self.seed, p.index)))
        with self._lock:
            self._render_cache[key] = pixels
            while len(self._render_cache) > 6:
                self._render_cache.popitem(last=False)
        return pixels

    def _render_stack(self, grid: GridSpec, p: Pass | None, script: ParsedEvalscript, harmonize: bool,
                      clip=None) -> np.ndarray:
        """The evalscript's outputs; like the service, outside ``clip`` (bounds.geometry) everything is 0."""
        shape_ = (grid.height, grid.width)
        if p is None:  # no acquisition in the time range: the service returns an empty (nodata) image
            values = {b: np.zeros(shape_, np.float32) for b in KNOWN_BANDS}
        else:
            pixels = self._render(grid, p)
            values = {b: pixels.bands[i].astype(np.float32) for i, b in enumerate(BAND_NAMES)}
            values["SCL"] = derive_scl(pixels).astype(np.float32)
            values["dataMask"] = np.ones(shape_, np.float32)
            if script.units == "DN":
                offset = 0.0 if harmonize or p.datetime < BOA_OFFSET_FROM else 1000.0
                for b in BAND_NAMES:
                    values[b] = values[b] * 10000.0 + offset
        stack = np.stack([values[band] * factor for band, factor in script.terms]).astype(np.float32)
        if clip is not None:
            outside = geometry_mask([mapping(clip)], out_shape=shape_, transform=grid.transform)
            stack[:, outside] = 0.0
        return _to_sample_type(stack, script.sample_type)


def _to_sample_type(stack: np.ndarray, sample_type: str) -> np.ndarray:
    if sample_type == "FLOAT32":
        return stack.astype(np.float32)
    if sample_type == "AUTO":
        return np.clip(np.round(stack * 255), 0, 255).astype(np.uint8)
    info = np.iinfo(np.dtype(sample_type.lower()))
    return np.clip(np.round(stack), info.min, info.max).astype(sample_type.lower())


def _geotiff(stack: np.ndarray, grid: GridSpec, p: Pass | None) -> bytes:
    profile = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": stack.shape[0],
               "dtype": stack.dtype.name, "crs": grid.crs, "transform": grid.transform}
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(stack)
            dst.update_tags(**{EMULATOR_TAG: "true", "SIMULATED": "true",
                               "ACQUISITION_DATETIME": "" if p is None else p.datetime.isoformat()})
        return mem.read()


def _epsg_of(crs_text: str) -> int:
    m = re.fullmatch(r"https?://www\.opengis\.net/def/crs/(EPSG/0/(\d+)|OGC/1\.3/CRS84)", str(crs_text).strip())
    if not m:
        raise ServiceError(400, f"Invalid request: CRS {crs_text!r} is not a supported CRS URI "
                                "(http://www.opengis.net/def/crs/EPSG/0/<code>)")
    epsg = 4326 if m.group(2) is None else int(m.group(2))
    if not (32601 <= epsg <= 32660 or 32701 <= epsg <= 32760):
        supported = epsg in (4326, 3857)
        raise ServiceError(400, f"Invalid request: CRS EPSG:{epsg} is not supported"
                                + (" by the emulator, which renders only UTM (EPSG:326xx/327xx)" if supported else ""))
    ProjCRS.from_epsg(epsg)
    return epsg


def _cloud_filter(flt, lang: str):
    """The eo:cloud_cover comparisons of a CQL2 filter (text or JSON) as a predicate; other properties -> 400."""
    if flt in (None, "", {}):
        return None
    ops = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
           "=": lambda a, b: a == b}
    preds = []
    if lang == "cql2-text" and isinstance(flt, str):
        for clause in re.split(r"\s+AND\s+", flt.strip(), flags=re.I):
            m = re.fullmatch(r"\s*eo:cloud_cover\s*(<=|>=|<|>|=)\s*([0-9.]+)\s*", clause)
            if not m:
                raise ServiceError(400, f"Invalid filter: {clause!r} (the emulator understands eo:cloud_cover "
                                        "comparisons joined by AND)")
            preds.append((m.group(1), float(m.group(2))))
    elif lang == "cql2-json" and isinstance(flt, dict):
        args = flt.get("args", []) if flt.get("op") == "and" else [flt]
        for a in args:
            try:
                op, (prop, value) = a["op"], a["args"]
                if prop != {"property": "eo:cloud_cover"} or op not in ops:
                    raise ValueError
                preds.append((op, float(value)))
            except (KeyError, ValueError, TypeError):
                raise ServiceError(400, f"Invalid filter: {a!r}") from None
    else:
        raise ServiceError(400, f"Invalid filter-lang {lang!r} for filter {flt!r}")
    return lambda cc: all(ops[op](cc, v) for op, v in preds)


def _load_project_aois() -> list[AOI]:
    from pipeline.config import list_aoi_names, load_aoi

    return [load_aoi(name) for name in list_aoi_names()]


class _OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


# ---------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    emulator: SentinelHubEmulator
    protocol_version = "HTTP/1.1"
    server_version = "SentinelHubEmulator/1.0"

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        LOGGER.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None,
              fault: Fault | None = None) -> None:
        if fault is not None and fault.delay_s:
            time.sleep(fault.delay_s)
        truncate = fault is not None and fault.truncate
        if fault is not None and fault.corrupt:
            body = body[: max(16, len(body) // 3)]
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, str(v))
            if truncate:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if truncate else body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nothing to answer
        if truncate:
            self.close_connection = True

    def _json(self, status: int, payload: dict, headers: dict | None = None, fault: Fault | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers, fault)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:  # noqa: N802
        self._body()
        self._json(404 if urlparse(self.path).path != "/" else 200,
                   {"service": "basewatch Sentinel Hub emulator", "simulated": True} if self.path == "/" else
                   ServiceError(404, f"{self.path} is not emulated").body())

    def do_POST(self) -> None:  # noqa: N802
        path = urlparse(self.path).path
        raw = self._body()
        endpoint = {TOKEN_PATH: "token", CATALOG_PATH: "catalog", PROCESS_PATH: "process"}.get(path)
        if endpoint is None:
            self._json(404, ServiceError(404, f"{path} is not emulated", "COMMON_NOT_FOUND").body())
            return
        emu = self.emulator
        emu._count(endpoint)
        started = time.monotonic()
        status, fault_name = 200, None
        try:
            if endpoint == "token":
                status, fault_name = self._token(raw)
            else:
                status, fault_name = self._api(endpoint, raw)
        finally:
            emu._done(endpoint)
            emu._record(RequestRecord(endpoint, status, started, time.monotonic(), fault_name))

    def _token(self, raw: bytes) -> tuple[int, str | None]:
        emu = self.emulator
        fault = emu._next_fault("token")
        if fault is not None and fault.status:
            self._json(fault.status, {"error": "server_error", "error_description": "injected fault"},
                       _retry_header(fault))
            return fault.status, f"status {fault.status}"
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype != "application/x-www-form-urlencoded":
            self._json(400, {"error": "invalid_request", "error_description": "Content-Type must be "
                                                                            "application/x-www-form-urlencoded"})
            return 400, None
        form = parse_qs(raw.decode("utf-8", "replace"))
        basic = None
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Basic "):
            try:
                cid, _, sec = base64.b64decode(auth[6:]).decode().partition(":")
                basic = (cid, sec)
            except ValueError:
                basic = ("", "")
        try:
            token = emu.issue_token(form, basic)
        except _OAuthError as exc:
            self._json(exc.status, {"error": exc.error, "error_description": exc.description})
            return exc.status, None
        self._json(200, token, fault=fault)
        return 200, _fault_name(fault)

    def _api(self, endpoint: str, raw: bytes) -> tuple[int, str | None]:
        emu = self.emulator
        try:
            token = emu.check_bearer(self.headers.get("Authorization"))
            fault = emu._next_fault(endpoint)
            if fault is not None and fault.status:
                if fault.status == 401:
                    emu.revoke(token)
                    raise ServiceError(401, "The access token is invalid or has expired; request a new one.",
                                       "COMMON_UNAUTHORIZED")
                raise ServiceError(fault.status, "injected fault: " + ServiceError.REASONS.get(fault.status, "error"),
                                   "RATE_LIMIT_EXCEEDED" if fault.status == 429 else "COMMON_EXCEPTION",
                                   _retry_header(fault))
            body = self._parse_body(raw, endpoint)
            if endpoint == "catalog":
                self._json(200, emu.catalog_search(body), fault=fault)
            else:
                image, headers = emu.process(body)
                self._send(200, image, "image/tiff", headers, fault)
            return 200, _fault_name(fault)
        except ServiceError as exc:
            self._json(exc.status, exc.body(), exc.headers)
            return exc.status, None
        except Exception as exc:  # a bug in the emulator: answer like the service would, and say it in the log
            LOGGER.exception("emulator failure")
            self._json(500, ServiceError(500, f"emulator failure: {exc}", "COMMON_EXCEPTION").body())
            return 500, None

    def _parse_body(self, raw: bytes, endpoint: str) -> dict:
        ctype = self.headers.get("Content-Type") or ""
        if endpoint == "process" and ctype.startswith("multipart/form-data"):
            return _parse_multipart(raw, ctype)
        if not ctype.startswith("application/json"):
            raise ServiceError(415, f"Content-Type {ctype or '(none)'} is not supported; send application/json",
                               "COMMON_UNSUPPORTED_MEDIA_TYPE")
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ServiceError(400, f"Could not parse the request body as JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ServiceError(400, "The request body must be a JSON object")
        return body


def _parse_multipart(raw: bytes, ctype: str) -> dict:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + raw)
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        parts[name] = part.get_payload(decode=True) or b""
    if "request" not in parts:
        raise ServiceError(400, "Invalid request: multipart body needs a 'request' part")
    try:
        body = json.loads(parts["request"].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ServiceError(400, f"Could not parse the 'request' part as JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ServiceError(400, "The 'request' part must be a JSON object")
    if "evalscript" in parts:
        body["evalscript"] = parts["evalscript"].decode("utf-8")
    return body


def _retry_header(fault: Fault) -> dict:
    return {"Retry-After": str(fault.retry_after_ms)} if fault.retry_after_ms is not None else {}


def _fault_name(fault: Fault | None) -> str | None:
    if fault is None:
        return None
    return "truncate" if fault.truncate else "corrupt" if fault.corrupt else f"delay {fault.delay_s}s"


def serve(*, port: int, client_id: str, client_secret: str, seed: int = 0, scenario_path=None,
          print_fn: Callable[[str], None] = print) -> None:
    """Run the emulator in the foreground until interrupted (`basewatch emulator`)."""
    from pipeline.config import load_scenario

    scenario = load_scenario(scenario_path)
    with SentinelHubEmulator(client_id=client_id, client_secret=client_secret, seed=seed, scenario=scenario,
                             port=port) as emu:
        print_fn(f"Sentinel Hub emulator on {emu.base_url} (SIMULATED pixels, scenario {scenario.name}).")
        print_fn("Point basewatch at it (these are emulator credentials, not real ones):")
        for key, value in emu.env().items():
            print_fn(f"  export {key}={value}")
        print_fn("then e.g.: basewatch fetch --aoi khmeimim --start 2024-12-01 --end 2024-12-20   (Ctrl-C stops)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print_fn(f"stopped after {emu.token_requests} token, {emu.catalog_requests} catalog and "
                     f"{emu.process_requests} process requests")
