"""Typed readers of environment variables, shared by the settings, gunicorn.conf.py and
the container's health probe.

Importing this module loads no Django settings, so processes that never start Django
(gunicorn's master reading its config, the probe) read a variable exactly as the site
does. A value that cannot be read raises BadEnvironmentValue, whose message names the
variable and says what it should be.
"""

from __future__ import annotations

import os

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
