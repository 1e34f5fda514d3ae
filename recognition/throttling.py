"""Rate limits: image uploads per user, login attempts per client IP and per username.

DRF's throttle classes keep their counters in Django's default cache, which settings
point at a store every worker shares. The same classes guard the API (as DRF throttles)
and the pages (through the decorators below), so switching between the upload page, a
session and a token does not reset anyone's budget: a user has one token, so per user
is per token too.

When the counters cannot be read (REDIS_URL set and Redis unreachable): uploads are let
through uncounted, logins are refused with 503 until it is back. SECURITY.md, "Rate
limits", says why.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from redis.exceptions import RedisError
from rest_framework.throttling import SimpleRateThrottle

from .errors import ServiceError

View = Callable[..., HttpResponse]
logger = logging.getLogger(__name__)

# What a cache backend raises when its store cannot be reached: Redis' connection and
# timeout errors, or the file cache's disk.
_COUNTERS_UNREACHABLE = (RedisError, OSError)


class CountersUnavailable(ServiceError):
    """The login-attempt counters cannot be read, so no attempt is checked."""

    status = 503
    code = "rate_limit_unavailable"

    def __init__(self) -> None:
        super().__init__(
            "Logging in is paused: the server cannot count login attempts right now. "
            "Please try again in a few minutes; if it lasts, tell the administrator."
        )


class _SettingRateThrottle(SimpleRateThrottle):
    """A throttle whose rate is read from a Django setting on every request, so a
    settings override (tests, a reload) takes effect at once."""

    setting = ""
    # Counters unreachable: True lets the request through uncounted, False refuses it.
    fail_open = True

    def get_rate(self) -> str:
        return getattr(settings, self.setting)

    def allow_request(self, request: Any, view: Any) -> bool:
        try:
            return self.counted_allow_request(request, view)
        except _COUNTERS_UNREACHABLE as exc:
            if self.fail_open:
                logger.error("Rate-limit counters unreachable, %s not counted: %s", self.scope, exc)
                return True
            logger.error("Rate-limit counters unreachable, %s refused: %s", self.scope, exc)
            raise CountersUnavailable() from exc

    def counted_allow_request(self, request: Any, view: Any) -> bool:
        return super().allow_request(request, view)


class _UploadThrottle(_SettingRateThrottle):
    """Counts image uploads (POST) per authenticated user; other methods are free. A
    request with several images (the upload page) counts each of them."""

    def __init__(self, images: int = 1) -> None:
        super().__init__()
        self.images = images

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if request.method != "POST" or not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}

    def counted_allow_request(self, request: Any, view: Any) -> bool:
        # SimpleRateThrottle.allow_request, with a cost of `images` instead of one.
        self.key = self.get_cache_key(request, view)
        if self.rate is None or self.key is None:
            return True
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        if len(self.history) + self.images > self.num_requests:
            return self.throttle_failure()
        self.history[:0] = [self.now] * self.images
        self.cache.set(self.key, self.history, self.duration)
        return True


class UploadBurstThrottle(_UploadThrottle):
    scope = "upload_burst"
    setting = "RECOGNITION_UPLOAD_RATE_BURST"


class UploadSustainedThrottle(_UploadThrottle):
    scope = "upload_sustained"
    setting = "RECOGNITION_UPLOAD_RATE_SUSTAINED"


UPLOAD_THROTTLES = (UploadBurstThrottle, UploadSustainedThrottle)


class LoginIpThrottle(_SettingRateThrottle):
    scope = "login_ip"
    setting = "RECOGNITION_LOGIN_RATE"
    fail_open = False  # unlimited password guessing is what this limit exists to stop

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        # get_ident: REMOTE_ADDR, or the proxy's view of the client (REST_FRAMEWORK NUM_PROXIES).
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginUsernameThrottle(_SettingRateThrottle):
    """Guessing one account's password from many addresses is limited too."""

    scope = "login_username"
    setting = "RECOGNITION_LOGIN_RATE"
    fail_open = False

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        username = request.POST.get("username", "").strip().lower()
        if not username:
            return None
        digest = hashlib.sha256(username.encode()).hexdigest()  # any text, a safe key
        return self.cache_format % {"scope": self.scope, "ident": digest}


def seconds_to_wait(request: HttpRequest, throttles: list[SimpleRateThrottle]) -> int | None:
    """None when the request may go ahead (and it is counted), else whole seconds to wait.
    A request refused by one throttle is not counted by the ones after it."""
    for throttle in throttles:
        if not throttle.allow_request(request, None):
            return max(1, math.ceil(throttle.wait() or throttle.duration))
    return None


def throttle_uploads(view: View) -> View:
    """The upload page's POST shares the API's per-user upload limits."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method != "POST":
            return view(request, *args, **kwargs)
        images = max(1, len(request.FILES.getlist("images")))
        throttles = [throttle_class(images) for throttle_class in UPLOAD_THROTTLES]
        wait = seconds_to_wait(request, throttles)
        if wait is None:
            return view(request, *args, **kwargs)
        burst = throttles[0].num_requests
        if images > burst:
            message = f"At most {burst} images can be sent at a time: choose fewer."
        else:
            message = f"You have uploaded too many images for now. Try again in {_duration(wait)}."
        response = render(request, "429.html", {"message": message}, status=429)
        response["Retry-After"] = str(wait)
        return response

    return wrapped


def throttle_logins(view: View) -> View:
    """Too many login attempts from one address, or for one username: the login form
    again, with a message, 429 and Retry-After; the password is not even checked."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        throttles = [LoginIpThrottle(), LoginUsernameThrottle()]
        wait = seconds_to_wait(request, throttles) if request.method == "POST" else None
        if wait is None:
            return view(request, *args, **kwargs)
        messages.error(request, f"Too many login attempts. Try again in {_duration(wait)}.")
        request.method = "GET"  # the view then shows an empty form instead of checking it
        response = view(request, *args, **kwargs)
        response.status_code = 429
        response["Retry-After"] = str(wait)
        return response

    return wrapped


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    if seconds < 2 * 3600:
        return f"{math.ceil(seconds / 60)} minutes"
    return f"{math.ceil(seconds / 3600)} hours"
