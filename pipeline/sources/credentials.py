"""Sentinel Hub credentials and endpoints: where they come from, what to do when they are missing, and keeping
secrets out of logs.

Precedence (DESIGN.md "Settings"): explicit arguments > environment > sentinelhub-py's ``config.toml``. We never let
sentinelhub-py create its default ``config.toml`` (SHConfig does that when the file is missing): we only read it when it
exists.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass, field
from ipaddress import ip_address
from urllib.parse import urlparse

from sentinelhub import SHConfig

from pipeline.errors import AuthError

ENV_CLIENT_ID = "SH_CLIENT_ID"
ENV_CLIENT_SECRET = "SH_CLIENT_SECRET"
ENV_BASE_URL = "BASEWATCH_SH_BASE_URL"
ENV_TOKEN_URL = "BASEWATCH_SH_TOKEN_URL"


@dataclass(frozen=True)
class EndpointProfile:
    """One deployment of the Sentinel Hub APIs."""

    name: str
    base_url: str
    token_url: str


PROFILES: dict[str, EndpointProfile] = {
    "sentinelhub": EndpointProfile(
        "sentinelhub",
        "https://services.sentinel-hub.com",
        "https://services.sentinel-hub.com/auth/realms/main/protocol/openid-connect/token",
    ),
    "cdse": EndpointProfile(
        "cdse",
        "https://sh.dataspace.copernicus.eu",
        "https://identity.dataspace.copernicus.eu/auth/realms/CDSE/protocol/openid-connect/token",
    ),
}


@dataclass(frozen=True)
class Credentials:
    """Resolved client credentials and endpoints. The secret is hidden from ``repr``."""

    client_id: str
    client_secret: str = field(repr=False)
    base_url: str
    token_url: str
    profile: str
    found_in: str

    def sh_config(self, **settings) -> SHConfig:
        """A sentinelhub-py config for these credentials (never reads or writes config.toml)."""
        return SHConfig(
            use_defaults=True,
            sh_client_id=self.client_id,
            sh_client_secret=self.client_secret,
            sh_base_url=self.base_url,
            sh_token_url=self.token_url,
            **settings,
        )


def config_file_location() -> str:
    """Where sentinelhub-py keeps its config.toml ($XDG_CONFIG_HOME/sentinelhub/config.toml)."""
    return SHConfig.get_config_location()


def missing_credentials_message(profile: str = "cdse") -> str:
    """The one message that says exactly what to set."""
    where = "https://dataspace.copernicus.eu (free account; then an OAuth client in its Sentinel Hub dashboard)"
    if profile == "sentinelhub":
        where = "https://apps.sentinel-hub.com/dashboard (User settings -> OAuth clients)"
    return (
        "no Sentinel Hub credentials found. Set the environment variables SH_CLIENT_ID and SH_CLIENT_SECRET "
        f"(an OAuth client from {where}), or store them in sentinelhub-py's config file {config_file_location()} "
        "with `sentinelhub.config --sh_client_id ID --sh_client_secret SECRET` (choose its profile with SH_PROFILE "
        "or source.sh_config_profile). See docs/REAL_IMAGERY.md. Or run without credentials: --source simulated."
    )


def _from_config_file(profile_name: str | None) -> tuple[str, str]:
    path = config_file_location()
    if not os.path.exists(path):
        return "", ""
    try:
        loaded = SHConfig.load(profile=profile_name)
    except KeyError:
        raise AuthError(
            f"profile {profile_name or os.environ.get('SH_PROFILE')!r} not found in {path}; "
            "fix source.sh_config_profile / SH_PROFILE or add the profile with `sentinelhub.config --profile NAME "
            "--sh_client_id ID --sh_client_secret SECRET`"
        ) from None
    except Exception as exc:  # a broken TOML file
        raise AuthError(f"{path}: unreadable sentinelhub config ({exc.__class__.__name__}); fix or delete it") from None
    return loaded.sh_client_id, loaded.sh_client_secret


def resolve_credentials(
    profile: str = "cdse", sh_config_profile: str | None = None, *, required: bool = True
) -> Credentials | None:
    """Credentials from the environment (SH_CLIENT_ID/SH_CLIENT_SECRET) or sentinelhub's config.toml.

    Endpoints come from basewatch's ``profile``; BASEWATCH_SH_BASE_URL / BASEWATCH_SH_TOKEN_URL override them.
    Missing credentials raise AuthError naming what to set (or return None when ``required`` is False).
    """
    if profile not in PROFILES:
        raise AuthError(f"unknown Sentinel Hub profile {profile!r}; use one of {', '.join(PROFILES)}")
    env_id, env_secret = os.environ.get(ENV_CLIENT_ID, ""), os.environ.get(ENV_CLIENT_SECRET, "")
    file_id, file_secret = _from_config_file(sh_config_profile)
    client_id, client_secret = env_id or file_id, env_secret or file_secret
    found_in = "environment" if env_id and env_secret else ("config file" if file_id and file_secret else "mixed")
    if not (client_id and client_secret):
        if not required:
            return None
        missing = [v for v, val in ((ENV_CLIENT_ID, client_id), (ENV_CLIENT_SECRET, client_secret)) if not val]
        raise AuthError(f"{' and '.join(missing)} not set: " + missing_credentials_message(profile))
    endpoints = PROFILES[profile]
    base_url = os.environ.get(ENV_BASE_URL) or endpoints.base_url
    token_url = os.environ.get(ENV_TOKEN_URL) or endpoints.token_url
    creds = Credentials(client_id, client_secret, base_url.rstrip("/"), token_url, profile, found_in)
    REDACTOR.add(client_secret)
    allow_loopback_http(token_url)
    return creds


def credentials_available(config) -> bool:
    """True when Sentinel Hub credentials are configured (``config`` is a BasewatchConfig or SourceConfig)."""
    source = getattr(config, "source", config)
    try:
        return resolve_credentials(source.profile, source.sh_config_profile, required=False) is not None
    except AuthError:
        return False


def is_loopback_http(url: str) -> bool:
    parsed = urlparse(url)
    if parsed.scheme != "http" or not parsed.hostname:
        return False
    if parsed.hostname == "localhost":
        return True
    try:
        return ip_address(parsed.hostname).is_loopback
    except ValueError:
        return False


def allow_loopback_http(token_url: str) -> None:
    """requests-oauthlib refuses http:// token URLs; allow it for a loopback emulator only, never for the internet."""
    if is_loopback_http(token_url):
        os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
    elif token_url.startswith("http://"):
        raise AuthError(f"token URL {token_url} is plain http on a non-loopback host; use https")


# ---------------------------------------------------------------- keeping secrets out of logs

_PATTERNS = (
    re.compile(r"(client_secret=)[^&\s'\"]+"),
    re.compile(r"((?:access_token|refresh_token|id_token)['\"]?\s*[:=]\s*['\"]?)[^'\"&\s,}]+"),
    re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+"),
)
# Loggers of third-party code known to log request bodies, headers or tokens at DEBUG.
_CHATTY_LOGGERS = (
    "requests_oauthlib.oauth2_session",
    "requests_oauthlib",
    "oauthlib",
    "oauthlib.oauth2.rfc6749.parameters",
    "oauthlib.oauth2.rfc6749.clients.base",
    "sentinelhub.download.session",
    "sentinelhub.download.sentinelhub_client",
    "sentinelhub.download.handlers",
    "urllib3.connectionpool",
)


class SecretRedactor(logging.Filter):
    """Rewrites log records so that known secrets and anything shaped like a token never reach a handler."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 8:  # real secrets are long; short words would mask ordinary text
            with self._lock:
                self._secrets.add(secret)

    def redact(self, text: str) -> str:
        for pattern in _PATTERNS:
            text = pattern.sub(r"\1***", text)
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: keep it as it is
            return True
        clean = self.redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, ()
        return True


REDACTOR = SecretRedactor()


def install_redaction() -> None:
    """Attach the redactor to every logger known to print secrets (idempotent)."""
    for name in _CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        if REDACTOR not in logger.filters:
            logger.addFilter(REDACTOR)


install_redaction()
