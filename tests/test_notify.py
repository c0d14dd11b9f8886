"""Notifications against real loopback servers: a webhook (http.server) and SMTP (aiosmtpd), all on 127.0.0.1."""

from __future__ import annotations

import email
import json
import logging
import socket
import threading
import time
from contextlib import contextmanager
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.config import NotifyConfig
from pipeline.notify import NotificationLedger, build_email, notify_new_alerts, redact_url

RUN = {"run_id": "20261126T000000Z-abc123", "simulated": True, "source": "simulated", "model": "classical-1.0",
       "report": "/data/reports/20261126T000000Z-abc123/index.html"}


def alert(n: int, kind: str = "airlift_surge", aoi: str = "khmeimim") -> dict:
    return {"id": f"{aoi}:{kind}:2024121{n}:classical-1.0", "aoi": aoi, "kind": kind, "severity": "high",
            "confidence": 0.8, "status": "new", "first_seen": f"2024-12-1{n}T08:25:00+00:00",
            "last_seen": f"2024-12-1{n}T08:25:00+00:00", "acquisitions": [f"acq{n}"],
            "baseline": {"large_aircraft": 2.0}, "current": {"large_aircraft": 5}, "evidence": [f"chips/{n}.png"]}


class Hook:
    """A loopback webhook receiver; ``script`` lists the status codes to answer in turn (then 200)."""

    def __init__(self, script: list[int] | None = None, delay_s: float = 0.0):
        self.posts: list[dict] = []
        self.paths: list[str] = []
        self.script = list(script or [])
        self.delay_s = delay_s
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if hook.delay_s:
                    time.sleep(hook.delay_s)
                status = hook.script.pop(0) if hook.script else 200
                hook.paths.append(self.path)
                if status == 200:
                    hook.posts.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=s3cret-token"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cfg(**kw) -> NotifyConfig:
    return NotifyConfig(**{"max_attempts": 3, "retry_backoff_s": 0.0, "timeout_s": 2.0, **kw})


def test_each_alert_is_posted_once_across_ticks_and_a_restart(tmp_path, hook):
    db = tmp_path / "basewatch.sqlite"
    env = {"BASEWATCH_WEBHOOK_URL": hook.url}
    first = notify_new_alerts(db, RUN, [alert(1), alert(2)], cfg(), env=env)
    assert first[0].delivered == [alert(1)["id"], alert(2)["id"]]
    # tick 2: the same alerts again (updated by a later run) plus one new
    second = notify_new_alerts(db, {**RUN, "run_id": "run-2"}, [alert(1), alert(2), alert(3)], cfg(), env=env)
    assert second[0].delivered == [alert(3)["id"]]
    # "restart": a new process has only the sqlite file; nothing goes out twice
    third = notify_new_alerts(db, {**RUN, "run_id": "run-3"}, [alert(1), alert(2), alert(3)], cfg(), env=env)
    assert third[0].delivered == []
    assert [[a["id"] for a in p["alerts"]] for p in hook.posts] == [[alert(1)["id"], alert(2)["id"]],
                                                                    [alert(3)["id"]]]
    body = hook.posts[0]
    assert {k: body[k] for k in ("run_id", "simulated", "source", "model", "report")} == RUN
    assert body["alerts"][0] == alert(1)  # the alerts.json alert schema, as given
    assert hook.posts[1]["run_id"] == "run-2"
    with NotificationLedger(db) as ledger:
        rows = ledger.rows("webhook")
    assert [r["status"] for r in rows] == ["sent"] * 3


def test_webhook_retries_5xx_then_succeeds(tmp_path):
    hook = Hook(script=[503, 500])
    try:
        sleeps: list[float] = []
        result = notify_new_alerts(tmp_path / "db.sqlite", RUN, [alert(1)], cfg(retry_backoff_s=0.5),
                                   env={"BASEWATCH_WEBHOOK_URL": hook.url}, sleep=sleeps.append)
        assert result[0].delivered == [alert(1)["id"]]
        assert len(hook.paths) == 3 and len(hook.posts) == 1
        assert sleeps == [0.5, 1.0]  # backoff doubles
        with NotificationLedger(tmp_path / "db.sqlite") as ledger:
            assert ledger.rows()[0]["attempts"] == 3
    finally:
        hook.close()


def test_a_failed_delivery_is_recorded_and_retried_next_tick_without_raising(tmp_path, caplog):
    hook = Hook(script=[503, 503, 503])
    try:
        db = tmp_path / "db.sqlite"
        env = {"BASEWATCH_WEBHOOK_URL": hook.url}
        with caplog.at_level(logging.INFO, logger="pipeline.notify"):
            first = notify_new_alerts(db, RUN, [alert(1)], cfg(), env=env)
        assert first[0].delivered == [] and first[0].failed == [alert(1)["id"]]
        assert "HTTP 503" in first[0].errors[0]
        with NotificationLedger(db) as ledger:
            row = ledger.rows()[0]
        assert (row["status"], row["attempts"]) == ("pending", 3) and "503" in row["last_error"]
        # next tick: no new alert, but the pending one goes out now that the receiver is back
        second = notify_new_alerts(db, {**RUN, "run_id": "run-2"}, [], cfg(), env=env)
        assert second[0].delivered == [alert(1)["id"]]
        assert hook.posts[0]["run_id"] == RUN["run_id"]  # sent with the payload it was queued with
        assert "s3cret-token" not in caplog.text and "/hook" not in caplog.text  # the URL's secrets stay out of logs
    finally:
        hook.close()


def test_4xx_is_not_retried_within_a_tick_and_timeouts_are(tmp_path):
    hook = Hook(script=[404])
    try:
        r = notify_new_alerts(tmp_path / "a.sqlite", RUN, [alert(1)], cfg(), env={"BASEWATCH_WEBHOOK_URL": hook.url})
        assert len(hook.paths) == 1 and r[0].failed and "refused" in r[0].errors[0]
    finally:
        hook.close()
    slow = Hook(delay_s=1.5)
    try:
        r = notify_new_alerts(tmp_path / "b.sqlite", RUN, [alert(1)], cfg(timeout_s=0.3, max_attempts=2),
                              env={"BASEWATCH_WEBHOOK_URL": slow.url})
        assert r[0].failed and "timed out" in r[0].errors[0]
    finally:
        slow.close()


def test_unreachable_webhook_never_raises(tmp_path):
    r = notify_new_alerts(tmp_path / "db.sqlite", RUN, [alert(1)], cfg(max_attempts=2),
                          env={"BASEWATCH_WEBHOOK_URL": "http://127.0.0.1:9/hook"})
    assert r[0].failed == [alert(1)["id"]] and "unreachable" in r[0].errors[0]


def test_no_channel_configured_sends_nothing(tmp_path):
    assert notify_new_alerts(tmp_path / "db.sqlite", RUN, [alert(1)], cfg(), env={}) == []


def test_redact_url_hides_path_query_and_credentials():
    assert redact_url("https://user:pw@hooks.example.com:8443/services/T0/B0/XYZ?token=abc") == \
        "https://hooks.example.com:8443/…"


@contextmanager
def smtp_server(handler=None, **options):
    """A loopback aiosmtpd server for one test: yields (port, received messages); stopped afterwards.

    Without a TLS context it offers no STARTTLS. ``handler`` replaces the default one that keeps each message."""
    aiosmtpd = pytest.importorskip("aiosmtpd.controller")
    from aiosmtpd.handlers import Message

    received = []

    class Keep(Message):
        def handle_message(self, message):
            received.append(message)

    port = free_port()
    controller = aiosmtpd.Controller(handler or Keep(), hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()


def test_smtp_message_content_via_aiosmtpd(tmp_path):
    with smtp_server() as (port, received):
        config = cfg(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False, mail_from="basewatch@example.org",
                     mail_to=["analyst@example.org", "duty@example.org"])
        alerts = [alert(1), alert(2, kind="outbound_columns", aoi="tartus")]
        result = notify_new_alerts(tmp_path / "db.sqlite", RUN, alerts, config, env={})
        assert result[0].channel == "email" and result[0].delivered == [a["id"] for a in alerts]
        again = notify_new_alerts(tmp_path / "db.sqlite", RUN, alerts, config, env={})
        assert again[0].delivered == []
    assert len(received) == 1
    msg = email.message_from_bytes(received[0].as_bytes(), policy=policy.default)
    assert msg["From"] == "basewatch@example.org"
    assert msg["To"] == "analyst@example.org, duty@example.org"
    assert msg["Subject"] == ("[basewatch] SIMULATED 2 new alerts: airlift_surge at khmeimim, "
                              "outbound_columns at tartus")
    body = msg.get_body(preferencelist=("plain",)).get_content()
    assert "SIMULATED SCENES" in body
    assert "[HIGH] airlift_surge at khmeimim (confidence 0.80)" in body
    assert '"large_aircraft": 5' in body and RUN["report"] in body
    attachment = next(p for p in msg.iter_attachments() if p.get_filename() == "alerts.json")
    payload = json.loads(attachment.get_content())
    assert payload["run_id"] == RUN["run_id"] and [a["id"] for a in payload["alerts"]] == [a["id"] for a in alerts]


def test_email_for_real_imagery_has_no_simulated_marker():
    msg = build_email({**RUN, "simulated": False}, [alert(1)], "a@b.c", ["d@e.f"])
    assert "SIMULATED" not in msg["Subject"]
    assert msg["Subject"] == "[basewatch] 1 new alert: airlift_surge at khmeimim"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_login_uses_credentials_from_the_environment_and_never_logs_them(tmp_path, caplog):
    pytest.importorskip("aiosmtpd.controller")
    from aiosmtpd.handlers import Sink
    from aiosmtpd.smtp import AuthResult, LoginPassword

    seen = []

    def authenticator(server, session, envelope, mechanism, data):
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"watcher", b"pa55-w0rd")
        seen.append((mechanism, data.login if isinstance(data, LoginPassword) else None, ok))
        return AuthResult(success=ok, handled=False)

    with smtp_server(Sink(), authenticator=authenticator, auth_require_tls=False, auth_required=True) as (port, _):
        config = cfg(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False, mail_to=["a@example.org"],
                     max_attempts=1)
        good = {"BASEWATCH_SMTP_USER": "watcher", "BASEWATCH_SMTP_PASSWORD": "pa55-w0rd"}
        with caplog.at_level(logging.DEBUG):
            bad = notify_new_alerts(tmp_path / "db.sqlite", RUN, [alert(1)], config,
                                    env={**good, "BASEWATCH_SMTP_PASSWORD": "wrong-secret"})
            assert bad[0].failed and "refused the login for 'watcher'" in bad[0].errors[0]
            ok = notify_new_alerts(tmp_path / "db.sqlite", RUN, [], config, env=good)  # pending, retried
        assert ok[0].delivered == [alert(1)["id"]]
        assert seen[-1] == ("PLAIN", b"watcher", True) and not any(ok for *_, ok in seen[:-1])
        assert "pa55-w0rd" not in caplog.text and "wrong-secret" not in caplog.text


def test_email_headers_are_well_formed_whatever_the_data():
    odd = {**alert(1), "kind": "airlift_surge\r\nBcc: victim@example.org", "aoi": "khmeimim\n"}
    msg = build_email(RUN, [odd], "basewatch@example.org", ["a@example.org"])
    assert "\n" not in msg["Subject"] and "\r" not in msg["Subject"]
    assert msg["Bcc"] is None
    assert msg["Date"] and msg["Message-ID"].endswith("@example.org>")
    assert email.message_from_bytes(msg.as_bytes(), policy=policy.default)["Bcc"] is None


def test_starttls_required_but_not_offered_is_refused_not_downgraded(tmp_path):
    with smtp_server() as (port, received):  # no TLS context: no STARTTLS
        config = cfg(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=True, mail_to=["a@example.org"])
        r = notify_new_alerts(tmp_path / "db.sqlite", RUN, [alert(1)], config, env={})
    assert r[0].failed and "does not offer STARTTLS" in r[0].errors[0]
    assert received == []  # nothing went out in clear
