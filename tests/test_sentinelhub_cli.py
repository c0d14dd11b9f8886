"""`basewatch fetch` against the emulator, and its answer without credentials."""

from __future__ import annotations

import json
import logging
import warnings

import pytest
from shapely.geometry import box
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.testing.sentinelhub_emulator import SentinelHubEmulator, pattern_renderer
from pipeline.types import AOI


@pytest.fixture
def small_config(tmp_path):
    """A config whose only AOI is a small square (fast), in its own configs folder."""
    (tmp_path / "configs" / "aois").mkdir(parents=True)
    (tmp_path / "configs" / "aois" / "square.yaml").write_text(
        "name: square\ntitle: square\noutline: [[35.940, 35.392], [35.952, 35.392], [35.952, 35.402], "
        "[35.940, 35.402]]\n")
    path = tmp_path / "configs" / "default.yaml"
    path.write_text("aois: [square]\nsource:\n  max_retries: 1\n  retry_backoff_s: 0.01\n  timeout_s: 5\n")
    return path


def test_fetch_command_against_the_emulator(tmp_path, small_config, monkeypatch):
    square = AOI(name="square", title="square", outline=box(35.940, 35.392, 35.952, 35.402))
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "0")
    with SentinelHubEmulator(renderer=pattern_renderer, aois=[square]) as emu:
        for key, value in emu.env().items():
            monkeypatch.setenv(key, value)
        args = ["fetch", "--config", str(small_config), "--data-dir", str(tmp_path / "data"), "--start", "2024-12-01",
                "--end", "2024-12-20", "--max-cloud", "100"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            first = CliRunner().invoke(app, args)
            assert first.exit_code == 0, first.output
            assert emu.process_requests == 4
            second = CliRunner().invoke(app, args)
        assert second.exit_code == 0 and emu.process_requests == 4
    assert "SIMULATED" in first.output
    files = sorted((tmp_path / "data" / "cache" / "sentinelhub" / "square").glob("*.tif"))
    assert len(files) == 4
    assert emu.client_secret not in first.output + second.output


def test_fetch_without_credentials_names_what_to_set(tmp_path, small_config):
    result = CliRunner().invoke(app, ["fetch", "--config", str(small_config), "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    out = " ".join(result.output.split())
    assert "SH_CLIENT_ID" in out and "SH_CLIENT_SECRET" in out and "config.toml" in out
    assert "Traceback" not in result.output


def test_run_on_the_emulator_keeps_secrets_out_of_store_reports_and_logs(tmp_path, small_config, monkeypatch, caplog):
    """`basewatch run --source sentinelhub` end to end; then grep everything under the data dir for secrets."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="requests_oauthlib")
    square = AOI(name="square", title="square", outline=box(35.940, 35.392, 35.952, 35.402))
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "0")
    data = tmp_path / "data"
    with SentinelHubEmulator(renderer=pattern_renderer, aois=[square]) as emu:
        for key, value in emu.env().items():
            monkeypatch.setenv(key, value)
        emu.inject("process", status=401)  # a second token mid-run
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = CliRunner().invoke(app, ["run", "--config", str(small_config), "--data-dir", str(data),
                                              "--source", "sentinelhub", "--aoi", "square", "--start", "2024-12-01",
                                              "--end", "2024-12-20", "--detector", "classical"])
        assert result.exit_code == 0, result.output
        assert emu.process_requests >= 3 and emu.token_requests == 2
        secrets = [emu.client_secret, *emu.issued_tokens()]
    written = [p for p in data.rglob("*") if p.is_file()]
    assert any(p.suffix == ".tif" for p in written) and any(p.suffix in (".db", ".sqlite") for p in written)
    alerts = next(p for p in written if p.name == "alerts.json")
    assert json.loads(alerts.read_text())["simulated"] is True  # emulator pixels are reported as simulated
    for secret in secrets:
        assert secret not in result.output and secret not in caplog.text
        for path in written:
            assert secret.encode() not in path.read_bytes(), path


def test_emulator_command_serves_until_interrupted():
    import os
    import signal
    import subprocess
    import sys

    import requests

    proc = subprocess.Popen([sys.executable, "-c", "from pipeline.cli import app; app()", "emulator", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("then e.g."):
                break
        text = "".join(lines)
        env = dict(ln.strip()[len("export "):].split("=", 1) for ln in lines if ln.strip().startswith("export "))
        assert set(env) == {"SH_CLIENT_ID", "SH_CLIENT_SECRET", "BASEWATCH_SH_BASE_URL", "BASEWATCH_SH_TOKEN_URL"}
        assert "SIMULATED" in text and env["BASEWATCH_SH_BASE_URL"].startswith("http://127.0.0.1:")
        token = requests.post(env["BASEWATCH_SH_TOKEN_URL"], timeout=5, data={
            "grant_type": "client_credentials", "client_id": env["SH_CLIENT_ID"],
            "client_secret": env["SH_CLIENT_SECRET"]})
        assert token.status_code == 200
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        assert "stopped after 1 token, 0 catalog and 0 process requests" in out
    finally:
        if proc.poll() is None:
            proc.kill()


def test_fetch_command_reports_failures_and_resumes(tmp_path, small_config, monkeypatch):
    square = AOI(name="square", title="square", outline=box(35.940, 35.392, 35.952, 35.402))
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "0")
    args = ["fetch", "--config", str(small_config), "--data-dir", str(tmp_path / "data"), "--start", "2024-12-01",
            "--end", "2024-12-20", "--max-cloud", "100"]
    with SentinelHubEmulator(renderer=pattern_renderer, aois=[square]) as emu:
        for key, value in emu.env().items():
            monkeypatch.setenv(key, value)
        emu.inject("process", status=503, times=-1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            failed = CliRunner().invoke(app, args)
            assert failed.exit_code == 2
            assert "fetch incomplete" in failed.output and "HTTP 503" in failed.output
            assert "Traceback" not in failed.output
            emu.clear_faults()
            emu.reset_counters()
            resumed = CliRunner().invoke(app, args)
        assert resumed.exit_code == 0 and emu.process_requests == 4
