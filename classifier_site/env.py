"""Typed readers of environment variables, shared by the settings, gunicorn.conf.py and
the container's health probe.

Importing this module loads no Django settings, so processes that never start Django
(gunicorn's master reading its config, the probe) read a variable exactly as the site
does. A value that cannot be read raises BadEnvironmentValue, whose message names the
variable and says what it should be.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured


class BadEnvironmentValue(ImproperlyConfigured):
    """An environment variable is set to something its reader cannot use."""


def envbool(name: str, default: bool) -> bool:
    value = os.getenv(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise BadEnvironmentValue(f"{name} must be a boolean (1/0, true/false), not {value!r}")


def envint(name: str, default: int | None, minimum: int = 0) -> int | None:
    value = os.getenv(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadEnvironmentValue(f"{name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise BadEnvironmentValue(f"{name} must be at least {minimum}, not {number}")
    return number


def envfraction(name: str, default: float) -> float:
    """A number from 0 to 1, such as a probability threshold."""
    value = os.getenv(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise BadEnvironmentValue(f"{name} must be a number from 0 to 1, not {value!r}") from None
    if not 0.0 <= number <= 1.0:  # also refuses nan
        raise BadEnvironmentValue(f"{name} must be a number from 0 to 1, not {value!r}")
    return number


_RATE_PERIODS = ("s", "sec", "second", "m", "min", "minute", "h", "hour", "d", "day")


def envrate(name: str, default: str) -> str:
    """A rate such as "30/min", in the form DRF's throttles read: requests/period."""
    value = (os.getenv(name) or default).strip()
    count, _, period = value.partition("/")
    if not (count.isdigit() and int(count) >= 1 and period in _RATE_PERIODS):
        raise BadEnvironmentValue(
            f"{name} must be a rate such as 30/min (per s, min, hour or day), not {value!r}"
        )
    return value


def envlist(name: str, default: str) -> list[str]:
    """Comma-separated values; blanks around and between commas are dropped."""
    return [item.strip() for item in os.getenv(name, default).split(",") if item.strip()]


# The databases this service is built and tested for (README, "Configuration").
_DATABASE_ENGINES = {
    "django.db.backends.sqlite3": "SQLite",
    "django.db.backends.postgresql": "PostgreSQL",
}


def envdatabase(name: str, default: str, **options) -> dict:
    """Django's DATABASES entry for a database URL; the message of a bad one shows only
    its scheme, since the rest may hold a password."""
    value = os.getenv(name) or default
    scheme = urlsplit(value).scheme or "(none)"
    fix = (
        f"{name} must be a database URL such as postgres://user:password@host:5432/name "
        "or sqlite:////absolute/path/db.sqlite3"
    )
    try:
        database = dj_database_url.parse(value, **options)
    except (ValueError, KeyError) as exc:  # unknown scheme, bad port, unquoted characters
        reason = str(exc).split(". ")[0].rstrip(".")
        raise BadEnvironmentValue(f"{fix}; the value given (scheme {scheme}) is not: {reason}.") from None
    if database["ENGINE"] not in _DATABASE_ENGINES:
        raise BadEnvironmentValue(
            f"{fix}; scheme {scheme} is not supported here "
            f"(supported: {', '.join(_DATABASE_ENGINES.values())})."
        )
    if database["ENGINE"] != "django.db.backends.sqlite3" and not (
        database["HOST"] and database["NAME"]
    ):
        raise BadEnvironmentValue(f"{fix}; the value given names no host or no database.")
    return database


def envredis(name: str) -> str:
    """A Redis URL (redis://, rediss:// or unix://), or "" when the variable is unset. The
    message of a bad one shows only its scheme, since the rest may hold a password."""
    value = (os.getenv(name) or "").strip()
    if not value:
        return ""
    fix = (
        f"{name} must be a Redis URL such as redis://127.0.0.1:6379/0 (rediss:// for TLS, "
        f"unix:///path/to/redis.sock), or be left unset to run without Redis"
    )
    parts = urlsplit(value)
    scheme = parts.scheme or "(none)"
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise BadEnvironmentValue(f"{fix}; the value given has scheme {scheme}.")
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise BadEnvironmentValue(f"{fix}; the value given (scheme {scheme}) has a bad port.") from None
    if parts.scheme == "unix":
        if not parts.path:
            raise BadEnvironmentValue(f"{fix}; the value given names no socket path.")
    elif not parts.hostname:
        raise BadEnvironmentValue(f"{fix}; the value given names no host.")
    elif parts.path not in ("", "/") and not parts.path[1:].isdigit():
        raise BadEnvironmentValue(
            f"{fix}; the part after the host must be a database number such as /0."
        )
    return value


def envendpoint(name: str) -> str:
    """An S3-compatible server's base URL (http:// or https://, a host, maybe a port), or
    "" when the variable is unset: boto3 then talks to AWS itself."""
    value = (os.getenv(name) or "").strip()
    if not value:
        return ""
    fix = (
        f"{name} must be the object store's base URL, such as http://127.0.0.1:8333 or "
        f"https://s3.eu-central-1.amazonaws.com, or be left unset for AWS S3"
    )
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise BadEnvironmentValue(f"{fix}; the value given has scheme {parts.scheme or '(none)'}.")
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise BadEnvironmentValue(f"{fix}; the value given has a bad port.") from None
    if not parts.hostname:
        raise BadEnvironmentValue(f"{fix}; the value given names no host.")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise BadEnvironmentValue(
            f"{fix}; the value given carries a user, a query or a fragment: keys go in "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."
        )
    return value


def envbucket(name: str) -> str:
    """An S3 bucket name, or "" when the variable is unset (files then stay on local disk)."""
    value = (os.getenv(name) or "").strip()
    if value and not (
        3 <= len(value) <= 63
        and all(c.islower() or c.isdigit() or c in ".-" for c in value)
        and value[0].isalnum()
        and value[-1].isalnum()
    ):
        raise BadEnvironmentValue(
            f"{name} must be an S3 bucket name (3 to 63 lowercase letters, digits, dots or "
            f"hyphens, such as recognition-images), or be left unset to keep files on the "
            f"local disk; not {value!r}."
        )
    return value
