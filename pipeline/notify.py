"""Notifications of NEW alerts by webhook and e-mail, each alert delivered once per channel, even across restarts.

Delivery state lives in a ``notifications`` table inside the store's SQLite file, keyed by (alert id, channel):
an alert is queued once (with the payload it will be sent with), marked ``sent`` after a successful delivery, and a
delivery that still fails after its retries stays ``pending`` with its error and is retried on the next tick.
Nothing here raises into the run: a broken webhook never stops detection.

Secrets stay out of logs: the webhook URL is logged as ``scheme://host:port/…`` only (tokens often live in the
path or query), and SMTP credentials come from ``BASEWATCH_SMTP_USER`` / ``BASEWATCH_SMTP_PASSWORD``.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import socket
import sqlite3
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.config import NotifyConfig

log = logging.getLogger(__name__)

WEBHOOK_ENV = "BASEWATCH_WEBHOOK_URL"
SMTP_USER_ENV = "BASEWATCH_SMTP_USER"
SMTP_PASSWORD_ENV = "BASEWATCH_SMTP_PASSWORD"
USER_AGENT = "basewatch-notify/1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    alert_id TEXT NOT NULL, channel TEXT NOT NULL, status TEXT NOT NULL,
    run_id TEXT NOT NULL, envelope TEXT NOT NULL, alert TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, queued_at TEXT NOT NULL, sent_at TEXT,
    PRIMARY KEY (alert_id, channel)
)
"""


class DeliveryError(Exception):
    """One delivery attempt failed; ``temporary`` says whether retrying can help (5xx, timeout, refused)."""

    def __init__(self, message: str, temporary: bool, retry_after: float | None = None):
        super().__init__(message)
        self.temporary = temporary
        self.retry_after = retry_after


def redact_url(url: str) -> str:
    """``https://hooks.example.com/T0/B0/secret?token=x`` -> ``https://hooks.example.com/…``: safe to log."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    return f"{parts.scheme}://{host}{port}/…"


# ---------------------------------------------------------------- channels


@dataclass(frozen=True)
class Webhook:
    """JSON POST of ``{run_id, simulated, source, model, report, alerts: [...]}`` (the alerts.json schema)."""

    url: str
    timeout_s: float = 10.0
    name: str = "webhook"

    def send(self, envelope: dict, alerts: list[dict]) -> None:
        body = json.dumps({**envelope, "alerts": alerts}, sort_keys=True).encode("utf-8")
        request = urllib.request.Request(
            self.url, data=body, method="POST",
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            code = exc.code
            retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            temporary = code >= 500 or code in (408, 429)
            hint = "" if temporary else " (the receiver refused the request; check the URL and its token)"
            raise DeliveryError(f"{redact_url(self.url)} answered HTTP {code}{hint}", temporary, retry_after) from None
        except TimeoutError:
            raise DeliveryError(f"{redact_url(self.url)} timed out after {self.timeout_s:g} s", True) from None
        except urllib.error.URLError as exc:
            raise DeliveryError(f"{redact_url(self.url)} unreachable ({_reason(exc.reason)})", True) from None
        except OSError as exc:
            raise DeliveryError(f"{redact_url(self.url)} failed ({_reason(exc)})", True) from None

    def describe(self) -> str:
        return f"webhook {redact_url(self.url)}"


@dataclass(frozen=True)
class Email:
    """One message per delivery: a readable summary plus the JSON payload as an attachment."""

    host: str
    port: int
    starttls: bool
    mail_from: str
    mail_to: tuple[str, ...]
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 10.0
    name: str = "email"

    def send(self, envelope: dict, alerts: list[dict]) -> None:
        message = build_email(envelope, alerts, self.mail_from, list(self.mail_to))
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                smtp.ehlo()
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if self.user:
                    smtp.login(self.user, self.password or "")
                smtp.send_message(message)
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(f"SMTP {self.host}:{self.port} does not offer {_reason(exc).split()[0]} (never sent "
                                "in clear instead); set notify.smtp_starttls: false only for a trusted local relay",
                                False) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"SMTP {self.host}:{self.port} refused the login for {self.user!r} "
                                f"({exc.smtp_code}); check {SMTP_USER_ENV}/{SMTP_PASSWORD_ENV}", False) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"SMTP {self.host}:{self.port} refused the recipients "
                                f"{sorted(exc.recipients)}; check notify.mail_to", False) from None
        except smtplib.SMTPResponseException as exc:
            temporary = 400 <= exc.smtp_code < 500
            raise DeliveryError(f"SMTP {self.host}:{self.port} answered {exc.smtp_code}", temporary) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {self.host}:{self.port} failed ({_reason(exc)})", True) from None

    def describe(self) -> str:
        return f"e-mail via {self.host}:{self.port} to {', '.join(self.mail_to)}"


Channel = Webhook | Email


def channels_from_config(cfg: NotifyConfig, env: Mapping[str, str] | None = None) -> list[Channel]:
    """The configured channels; the environment's webhook URL and SMTP credentials win over the file."""
    env = os.environ if env is None else env
    out: list[Channel] = []
    url = env.get(WEBHOOK_ENV) or cfg.webhook_url
    if url:
        out.append(Webhook(url=url, timeout_s=cfg.timeout_s))
    if cfg.smtp_host:
        if not cfg.mail_to:
            log.warning("notify.smtp_host is set but notify.mail_to is empty: e-mail notifications are off")
        else:
            out.append(Email(
                host=cfg.smtp_host, port=cfg.smtp_port, starttls=cfg.smtp_starttls,
                mail_from=cfg.mail_from or f"basewatch@{socket.gethostname()}", mail_to=tuple(cfg.mail_to),
                user=env.get(SMTP_USER_ENV) or None, password=env.get(SMTP_PASSWORD_ENV) or None,
                timeout_s=cfg.timeout_s,
            ))
    return out


def build_email(envelope: dict, alerts: list[dict], mail_from: str, mail_to: list[str]) -> EmailMessage:
    """Subject names the count, the kinds and places; the body lists each alert; the JSON rides along."""
    simulated = bool(envelope.get("simulated"))
    tag = "SIMULATED " if simulated else ""
    what = ", ".join(f"{a['kind']} at {a['aoi']}" for a in alerts[:3]) + (" …" if len(alerts) > 3 else "")
    what = " ".join(what.split())  # data never breaks a header line
    noun = "alert" if len(alerts) == 1 else "alerts"
    message = EmailMessage()
    message["Subject"] = f"[basewatch] {tag}{len(alerts)} new {noun}: {what}"
    message["From"] = mail_from
    message["To"] = ", ".join(mail_to)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=mail_from.rpartition("@")[2] or None)
    lines = []
    if simulated:
        lines += ["SIMULATED SCENES: these alerts come from the built-in simulator, not from real imagery.", ""]
    lines += [f"basewatch run {envelope.get('run_id')} (source {envelope.get('source')}, "
              f"model {envelope.get('model')}) raised {len(alerts)} new {noun}:", ""]
    for a in alerts:
        lines.append(f"- [{a['severity'].upper()}] {a['kind']} at {a['aoi']} (confidence {a['confidence']:.2f}), "
                     f"first seen {a['first_seen']}, last seen {a['last_seen']}")
        lines.append(f"    baseline {json.dumps(a['baseline'], sort_keys=True)}")
        lines.append(f"    current  {json.dumps(a['current'], sort_keys=True)}")
    lines += ["", f"Report: {envelope.get('report')}", ""]
    message.set_content("\n".join(lines))
    payload = json.dumps({**envelope, "alerts": alerts}, indent=1, sort_keys=True)
    message.add_attachment(payload.encode("utf-8"), maintype="application", subtype="json", filename="alerts.json")
    return message


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _reason(exc: object) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]


# ---------------------------------------------------------------- the ledger


class NotificationLedger:
    """Which alert went to which channel: the ``notifications`` table in the store's SQLite file."""

    def __init__(self, db_path: str | Path):
        self.path = Path(db_path)
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> NotificationLedger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def queue(self, channel: str, run_id: str, envelope: dict, alert: dict) -> bool:
        """Queue ``alert`` for ``channel`` unless it ever was; True if it is new to that channel."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO notifications (alert_id, channel, status, run_id, envelope, alert, queued_at) "
            "VALUES (?, ?, 'pending', ?, ?, ?, ?)",
            (alert["id"], channel, run_id, json.dumps(envelope, sort_keys=True), json.dumps(alert, sort_keys=True),
             _now()),
        )
        return cur.rowcount == 1

    def pending(self, channel: str) -> list[tuple[dict, list[dict]]]:
        """Pending alerts of ``channel`` grouped by the run that queued them: [(envelope, [alert, ...])]."""
        rows = self._db.execute(
            "SELECT * FROM notifications WHERE channel = ? AND status = 'pending' ORDER BY queued_at, run_id, alert_id",
            (channel,),
        ).fetchall()
        groups: dict[str, tuple[dict, list[dict]]] = {}
        for r in rows:
            envelope, alerts = groups.setdefault(r["run_id"], (json.loads(r["envelope"]), []))
            alerts.append(json.loads(r["alert"]))
        return list(groups.values())

    def mark_sent(self, channel: str, alert_ids: list[str], attempts: int) -> None:
        with self._transaction():
            for alert_id in alert_ids:
                self._db.execute(
                    "UPDATE notifications SET status = 'sent', sent_at = ?, attempts = attempts + ?, last_error = NULL "
                    "WHERE alert_id = ? AND channel = ?", (_now(), attempts, alert_id, channel))

    def mark_failed(self, channel: str, alert_ids: list[str], attempts: int, error: str) -> None:
        with self._transaction():
            for alert_id in alert_ids:
                self._db.execute(
                    "UPDATE notifications SET attempts = attempts + ?, last_error = ? "
                    "WHERE alert_id = ? AND channel = ?",
                    (attempts, error, alert_id, channel))

    def rows(self, channel: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM notifications", ()
        if channel:
            sql, args = sql + " WHERE channel = ?", (channel,)
        return [dict(r) for r in self._db.execute(sql + " ORDER BY queued_at, alert_id", args)]

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _now() -> str:
    return datetime.now(UTC).isoformat()


# ---------------------------------------------------------------- delivery


@dataclass(frozen=True)
class DeliveryResult:
    """What one channel did this tick."""

    channel: str
    delivered: list[str]
    failed: list[str]
    errors: list[str]


def deliver(channel: Channel, envelope: dict, alerts: list[dict], *, max_attempts: int, backoff_s: float,
            sleep: Callable[[float], None] = time.sleep) -> tuple[int, str | None]:
    """Send once with retries on temporary errors (backoff doubling, Retry-After honoured up to 60 s).

    Returns (attempts made, None on success or the last error message).
    """
    error = None
    for attempt in range(1, max_attempts + 1):
        try:
            channel.send(envelope, alerts)
            return attempt, None
        except DeliveryError as exc:
            error = str(exc)
            log.warning("%s: attempt %d/%d failed: %s", channel.describe(), attempt, max_attempts, error)
            if not exc.temporary or attempt == max_attempts:
                return attempt, error
            delay = backoff_s * 2 ** (attempt - 1)
            if exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, 60.0))
        except Exception as exc:  # noqa: BLE001 - a bug or odd data must not stop the run; recorded, retried next tick
            log.exception("%s: unexpected delivery failure", channel.describe())
            return attempt, f"{type(exc).__name__}: {_reason(exc)}"
        sleep(delay)
    return max_attempts, error


def notify_new_alerts(db_path: str | Path, envelope: dict, alerts: list[dict], cfg: NotifyConfig, *,
                      env: Mapping[str, str] | None = None,
                      sleep: Callable[[float], None] = time.sleep) -> list[DeliveryResult]:
    """Queue the alerts no channel has seen yet, then deliver everything pending (this tick's and earlier failures).

    ``envelope`` is the alerts.json header of the run plus ``report`` (path of its index.html); ``alerts`` are
    alert records in the alerts.json schema. Never raises for a delivery problem; returns what happened.
    """
    channels = channels_from_config(cfg, env)
    if not channels:
        log.debug("no notification channel configured (notify.webhook_url, %s or notify.smtp_host)", WEBHOOK_ENV)
        return []
    results = []
    with NotificationLedger(db_path) as ledger:
        for channel in channels:
            fresh = [a["id"] for a in alerts if ledger.queue(channel.name, envelope["run_id"], envelope, a)]
            if fresh:
                log.info("%s: %d new alert(s) queued", channel.describe(), len(fresh))
            delivered, failed, errors = [], [], []
            for group_envelope, group in ledger.pending(channel.name):
                ids = [a["id"] for a in group]
                attempts, error = deliver(channel, group_envelope, group, max_attempts=cfg.max_attempts,
                                          backoff_s=cfg.retry_backoff_s, sleep=sleep)
                if error is None:
                    ledger.mark_sent(channel.name, ids, attempts)
                    delivered += ids
                    log.info("%s: delivered %d alert(s) of run %s", channel.describe(), len(ids),
                             group_envelope.get("run_id"))
                else:
                    ledger.mark_failed(channel.name, ids, attempts, error)
                    failed += ids
                    errors.append(error)
                    log.error("%s: %d alert(s) not delivered after %d attempt(s); retried next tick: %s",
                              channel.describe(), len(ids), attempts, error)
            results.append(DeliveryResult(channel.name, delivered, failed, errors))
    return results
