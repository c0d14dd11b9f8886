"""The emulator answers like the Sentinel Hub service: status codes, error JSON, paging, evalscript outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
from rasterio.io import MemoryFile
from shapely.geometry import box

from pipeline.sources.evalscript import EVALSCRIPT
from pipeline.testing.sentinelhub_emulator import SentinelHubEmulator, parse_evalscript, pattern_renderer
from pipeline.types import AOI

TINY = AOI(name="tiny", title="tiny", outline=box(35.940, 35.392, 35.952, 35.402))
BBOX = [765000.0, 3917000.0, 765640.0, 3917480.0]  # 64 x 48 px at 10 m in EPSG:32636
UTM = "http://www.opengis.net/def/crs/EPSG/0/32636"


@pytest.fixture(scope="module")
def emu():
    with SentinelHubEmulator(renderer=pattern_renderer, aois=[TINY]) as e:
        yield e


@pytest.fixture(scope="module")
def token(emu):
    r = requests.post(emu.token_url, data={"grant_type": "client_credentials", "client_id": emu.client_id,
                                           "client_secret": emu.client_secret}, timeout=5)
    assert r.status_code == 200 and r.json()["token_type"] == "Bearer" and r.json()["expires_in"] > 0
    return r.json()["access_token"]


def process_body(**overrides) -> dict:
    body = {
        "input": {
            "bounds": {"bbox": BBOX, "properties": {"crs": UTM}},
            "data": [{"type": "sentinel-2-l2a",
                      "dataFilter": {"timeRange": {"from": "2024-12-13T08:15:00Z", "to": "2024-12-13T08:35:00Z"}},
                      "processing": {"harmonizeValues": True}}],
        },
        "output": {"width": 64, "height": 48,
                   "responses": [{"identifier": "default", "format": {"type": "image/tiff"}}]},
        "evalscript": EVALSCRIPT,
    }
    body.update(overrides)
    return body


def post(emu, token, path, body, **kwargs):
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **kwargs.pop("headers", {})}
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return requests.post(emu.base_url + path, data=data, headers=headers, timeout=10, **kwargs)


def error_of(response) -> dict:
    err = response.json()["error"]
    assert set(err) == {"status", "reason", "message", "code"} and err["status"] == response.status_code
    return err


def read_tiff(content: bytes):
    with MemoryFile(content) as mem, mem.open() as ds:
        return ds.read(), ds.tags(), ds.crs, ds.transform


def test_process_returns_a_marked_geotiff_for_the_requested_grid(emu, token):
    r = post(emu, token, "/api/v1/process", process_body())
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/tiff"
    data, tags, crs, transform = read_tiff(r.content)
    assert data.shape == (6, 48, 64) and data.dtype == np.float32
    assert crs.to_epsg() == 32636
    assert (transform.a, transform.e, transform.c, transform.f) == (10, -10, BBOX[0], BBOX[3])
    assert tags["BASEWATCH_EMULATOR"] == "true" and tags["SIMULATED"] == "true"
    assert r.headers["X-Basewatch-Emulator"] == "simulated"
    assert 0 < data[0].mean() < 1 and set(np.unique(data[5])) == {1.0}  # reflectance, dataMask 1


def test_no_pass_in_the_time_range_gives_an_empty_image(emu, token):
    body = process_body()
    body["input"]["data"][0]["dataFilter"]["timeRange"] = {"from": "2024-12-14T00:00:00Z", "to": "2024-12-15T00:00:00Z"}
    data, *_ = read_tiff(post(emu, token, "/api/v1/process", body).content)
    assert not data.any()  # dataMask 0 everywhere


def test_dn_units_and_uint16_follow_the_evalscript(emu, token):
    script = EVALSCRIPT.replace('bands: ["B02", "B03", "B04", "B08", "SCL", "dataMask"] }',
                                'bands: ["B04", "B08"], units: "DN" }').replace(
        "bands: 6, sampleType: \"FLOAT32\"", "bands: 2, sampleType: \"UINT16\"").replace(
        "[sample.B02, sample.B03, sample.B04, sample.B08, sample.SCL, sample.dataMask]", "[sample.B04, sample.B08]")
    dn, *_ = read_tiff(post(emu, token, "/api/v1/process", process_body(evalscript=script)).content)
    refl, *_ = read_tiff(post(emu, token, "/api/v1/process", process_body()).content)
    assert dn.dtype == np.uint16 and dn.shape == (2, 48, 64)
    np.testing.assert_allclose(dn[0], np.round(refl[2] * 10000), atol=1)


def test_multipart_request_is_accepted(emu, token):
    body = process_body()
    script = body.pop("evalscript")
    files = {"request": (None, json.dumps(body), "application/json"), "evalscript": (None, script, "text/plain")}
    r = requests.post(emu.base_url + "/api/v1/process", files=files, headers={"Authorization": f"Bearer {token}"},
                      timeout=10)
    assert r.status_code == 200
    assert read_tiff(r.content)[0].shape == (6, 48, 64)


def test_resolution_instead_of_size(emu, token):
    body = process_body()
    body["output"] = {"resx": 20, "resy": 20, "responses": body["output"]["responses"]}
    assert read_tiff(post(emu, token, "/api/v1/process", body).content)[0].shape == (6, 24, 32)


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        (lambda b: b.pop("evalscript"), 400, "evalscript must be set"),
        (lambda b: b["output"].update(width=3000, height=100), 400, "exceeds the limit 2500.00x2500.00"),
        (lambda b: b["input"]["bounds"]["properties"].update(crs="http://www.opengis.net/def/crs/EPSG/0/99999"),
         400, "not supported"),
        (lambda b: b["input"]["bounds"]["properties"].update(crs="EPSG:32636"), 400, "not a supported CRS"),
        (lambda b: b["input"]["data"][0].update(type="sentinel-1-grd"), 400, "unknown data type"),
        (lambda b: b.update(evalscript="//VERSION=3\nfunction setup(){return {input:[{bands:['B99']}], "
                            "output:{bands:1}}}\nfunction evaluatePixel(s){return [s.B99]}"), 400, "Unknown band"),
        (lambda b: b.update(evalscript="//VERSION=3\nfunction setup(){return {input:[{bands:['B02']}], "
                            "output:{bands:2}}}\nfunction evaluatePixel(s){return [s.B02]}"), 400, "expects 2 bands"),
    ],
    ids=["no-evalscript", "too-large", "unknown-crs", "crs-not-uri", "wrong-collection", "unknown-band",
         "band-count"],
)
def test_process_validation_errors(emu, token, change, status, words):
    body = process_body()
    change(body)
    r = post(emu, token, "/api/v1/process", body)
    assert r.status_code == status
    assert words in error_of(r)["message"]


def test_bad_json_and_media_type(emu, token):
    r = post(emu, token, "/api/v1/process", b"{not json")
    assert r.status_code == 400 and "JSON" in error_of(r)["message"]
    r = post(emu, token, "/api/v1/process", b"x", headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and error_of(r)["code"] == "COMMON_UNSUPPORTED_MEDIA_TYPE"


@pytest.mark.parametrize("auth", [None, "Bearer not-a-token", "Basic abc"], ids=["none", "unknown", "basic"])
def test_api_needs_a_valid_bearer_token(emu, auth):
    headers = {"Content-Type": "application/json"} | ({"Authorization": auth} if auth else {})
    r = requests.post(emu.base_url + "/api/v1/process", data=json.dumps(process_body()), headers=headers, timeout=5)
    assert r.status_code == 401 and error_of(r)["code"] == "COMMON_UNAUTHORIZED"


def test_expired_token_is_refused(token):
    with SentinelHubEmulator(renderer=pattern_renderer, aois=[TINY], token_ttl_s=0) as short:
        t = requests.post(short.token_url, data={"grant_type": "client_credentials", "client_id": short.client_id,
                                                 "client_secret": short.client_secret}, timeout=5).json()
        r = post(short, t["access_token"], "/api/v1/catalog/1.0.0/search", {"collections": ["sentinel-2-l2a"],
                                                                             "bbox": [35.9, 35.3, 36.0, 35.4]})
        assert r.status_code == 401 and "expired" in error_of(r)["message"]


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({"grant_type": "client_credentials", "client_id": "x", "client_secret": "wrong"}, 401, "invalid_client"),
        ({"client_id": "x", "client_secret": "y"}, 400, "invalid_request"),
        ({"grant_type": "password", "client_id": "x", "client_secret": "y"}, 400, "unsupported_grant_type"),
    ],
    ids=["wrong-secret", "no-grant-type", "bad-grant-type"],
)
def test_token_endpoint_errors(emu, form, status, error):
    r = requests.post(emu.token_url, data=form, timeout=5)
    assert r.status_code == status and r.json()["error"] == error


def test_token_endpoint_accepts_basic_auth_and_refuses_json(emu):
    ok = requests.post(emu.token_url, data={"grant_type": "client_credentials"},
                       auth=(emu.client_id, emu.client_secret), timeout=5)
    assert ok.status_code == 200
    bad = requests.post(emu.token_url, json={"grant_type": "client_credentials"}, timeout=5)
    assert bad.status_code == 400


def test_catalog_paging_filter_and_revisit_calendar(emu, token):
    body = {"collections": ["sentinel-2-l2a"], "bbox": [35.94, 35.39, 35.95, 35.40],
            "datetime": "2024-12-01T00:00:00Z/2024-12-31T23:59:59Z", "limit": 4}
    pages, features = 0, []
    while True:
        r = post(emu, token, "/api/v1/catalog/1.0.0/search", body)
        assert r.status_code == 200
        page = r.json()
        assert page["type"] == "FeatureCollection" and page["context"]["returned"] == len(page["features"])
        features += page["features"]
        pages += 1
        if "next" not in page["context"]:
            assert not page["links"]
            break
        assert page["links"][0]["rel"] == "next" and page["links"][0]["body"]["next"] == page["context"]["next"]
        body["next"] = page["context"]["next"]
    days = sorted({f["properties"]["datetime"][:10] for f in features})
    assert days == ["2024-12-03", "2024-12-08", "2024-12-13", "2024-12-18", "2024-12-23", "2024-12-28"]
    assert len(features) == 12 and pages == 3  # two tiles per pass, 4 per page
    platforms = [f["properties"]["platform"] for f in sorted(features, key=lambda f: f["properties"]["datetime"])]
    assert platforms[::2] == ["sentinel-2b", "sentinel-2a"] * 3  # alternating spacecraft
    filtered = post(emu, token, "/api/v1/catalog/1.0.0/search",
                    {**body, "next": None, "limit": 100, "filter": "eo:cloud_cover <= 20", "filter-lang": "cql2-text"})
    covers = [f["properties"]["eo:cloud_cover"] for f in filtered.json()["features"]]
    assert covers and max(covers) <= 20 and len(covers) < 12


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"collections": ["sentinel-1-grd"]}, "collections"),
        ({"limit": 500}, "limit"),
        ({"datetime": "yesterday/today"}, "ISO 8601"),
        ({"filter": "platform = 'x'"}, "Invalid filter"),
    ],
)
def test_catalog_validation_errors(emu, token, change, words):
    body = {"collections": ["sentinel-2-l2a"], "bbox": [35.94, 35.39, 35.95, 35.40], **change}
    r = post(emu, token, "/api/v1/catalog/1.0.0/search", body)
    assert r.status_code == 400 and words in error_of(r)["message"]


def test_injected_faults_and_counters(emu, token):
    before = emu.process_requests
    emu.inject("process", status=503, retry_after_ms=250, times=2)
    r1, r2, r3 = (post(emu, token, "/api/v1/process", process_body()) for _ in range(3))
    assert [r1.status_code, r2.status_code, r3.status_code] == [503, 503, 200]
    assert r1.headers["Retry-After"] == "250"
    assert emu.process_requests == before + 3


def test_basewatch_evalscript_is_understood():
    parsed = parse_evalscript(EVALSCRIPT)
    assert parsed.input_bands == ("B02", "B03", "B04", "B08", "SCL", "dataMask")
    assert parsed.output_bands == 6 and parsed.sample_type == "FLOAT32"
    assert [b for b, _ in parsed.terms] == list(parsed.input_bands)


def test_bounds_geometry_clips_like_the_service(emu, token):
    body = process_body()
    x0, y0, x1, y1 = BBOX
    body["input"]["bounds"]["geometry"] = {"type": "Polygon", "coordinates": [
        [[x0, y0], [x0 + 320, y0], [x0 + 320, y1], [x0, y1], [x0, y0]]]}  # the western half
    data, *_ = read_tiff(post(emu, token, "/api/v1/process", body).content)
    assert data[5, :, :32].all() and not data[5, :, 32:].any()  # dataMask 1 inside, 0 outside
    assert not data[:, :, 32:].any()
