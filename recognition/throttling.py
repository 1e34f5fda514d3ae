"""Rate limits: image uploads per user, login attempts per client IP and per username.

DRF's throttle classes keep their counters in Django's default cache, which settings
point at a store every worker shares. The same classes guard the API (as DRF throttles)
and the pages (through the decorators below), so switching between the upload page, a
session and a token does not reset anyone's budget: a user has one token, so per user
is per token too.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework.throttling import SimpleRateThrottle

View = Callable[..., HttpResponse]


class _SettingRateThrottle(SimpleRateThrottle):
    """A throttle whose rate is read from a Django setting on every request, so a
    settings override (tests, a reload) takes effect at once."""

    setting = ""

    def get_rate(self) -> str:
        return getattr(settings, self.setting)


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

    def allow_request(self, request: Any, view: Any) -> bool:
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

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        # get_ident: REMOTE_ADDR, or the proxy's view of the client (REST_FRAMEWORK NUM_PROXIES).
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginUsernameThrottle(_SettingRateThrottle):
    """Guessing one account's password from many addresses is limited too."""

    scope = "login_username"
    setting = "RECOGNITION_LOGIN_RATE"

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
