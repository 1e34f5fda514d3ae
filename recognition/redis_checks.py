"""The system check of Redis: with REDIS_URL set, the server must answer before a process
serves, since the rate limits and the job broker live there. `manage.py check` reports
a failure; gunicorn, the management commands (classifier_site/startup.py) and the Celery
worker refuse to start on it with one paragraph naming REDIS_URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.core import checks


@checks.register("redis")
def check_redis(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    url = settings.REDIS_URL
    if not url:
        return []  # embedded mode: file cache and filesystem broker, no server
    problem = redis_problem(url)
    return [checks.Error(problem, id="recognition.E201")] if problem else []


def redis_problem(url: str) -> str | None:
    """Why the Redis at `url` cannot be used, as one paragraph; None if it answers."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except redis.AuthenticationError:
        return (
            f"REDIS_URL: the Redis server at {_where(url)} refused the credentials. Put the "
            "right password in REDIS_URL (redis://:password@host:6379/0)."
        )
    except redis.RedisError as exc:
        reason = str(exc).split(". ")[0].rstrip(".") or type(exc).__name__
        return (
            f"REDIS_URL: no Redis server answers at {_where(url)} ({reason}). Start Redis "
            "there, or fix REDIS_URL, or unset it to run on one machine without Redis."
        )
    return None


def _where(url: str) -> str:
    """host:port, never the password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname}:{parts.port or 6379}"
