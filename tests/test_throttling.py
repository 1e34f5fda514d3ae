"""Rate limits: uploads per user across the API and the page, login attempts per client
IP and per username; each answers 429 with Retry-After. The cache is fresh per test
(tests/web_fixtures.py `fresh_cache`); rates are lowered through settings."""

from __future__ import annotations

import http.client
import os
import re
import socket

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, override_settings

from classifier_site import settings as site_settings
from classifier_site.settings import envrate
from recognition import services
from recognition.models import Upload
from tests.live_service import UPLOAD_PATH, gunicorn, live_data, multipart_image, upload
from tests.web_fixtures import PASSWORD, as_upload, image_bytes

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]

API = "/api/v1/classifications/"
LOGIN = "/accounts/login/"

_seed = iter(range(5000, 6000))


def upload_via_api(client):
    return client.post(API, {"image": as_upload(image_bytes(seed=next(_seed)))}, format="multipart")


def upload_via_page(client):
    return client.post("/", {"images": as_upload(image_bytes(seed=next(_seed)))})


@pytest.fixture
def burst_of_two(settings):
    settings.RECOGNITION_UPLOAD_RATE_BURST = "2/min"
    settings.RECOGNITION_UPLOAD_RATE_SUSTAINED = "1000/day"


def test_the_third_api_upload_in_a_minute_gets_429_with_retry_after(alice_api, burst_of_two):
    assert [upload_via_api(alice_api).status_code for _ in range(2)] == [201, 201]

    response = upload_via_api(alice_api)

    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert "available in" in response.json()["error"]["message"]
    assert 1 <= int(response["Retry-After"]) <= 60
    assert Upload.objects.count() == 2


def test_the_sustained_limit_applies_when_the_burst_would_allow_more(alice_api, settings):
    settings.RECOGNITION_UPLOAD_RATE_BURST = "100/min"
    settings.RECOGNITION_UPLOAD_RATE_SUSTAINED = "1/day"
    assert upload_via_api(alice_api).status_code == 201

    response = upload_via_api(alice_api)

    assert response.status_code == 429
    assert int(response["Retry-After"]) > 60 * 60  # the day is what must pass


def test_the_upload_page_gets_a_readable_429_page_with_retry_after(alice_client, burst_of_two):
    assert [upload_via_page(alice_client).status_code for _ in range(2)] == [200, 200]

    response = upload_via_page(alice_client)

    assert response.status_code == 429
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "Too many requests" in html
    assert "You have uploaded too many images for now. Try again in" in html
    assert 1 <= int(response["Retry-After"]) <= 60
    assert Upload.objects.count() == 2


def test_each_image_of_a_several_file_page_upload_counts(alice_client, alice_api, settings):
    settings.RECOGNITION_UPLOAD_RATE_BURST = "3/min"
    files = [as_upload(image_bytes(seed=next(_seed)), f"{n}.jpg") for n in range(2)]
    assert alice_client.post("/", {"images": files}).status_code == 200

    files = [as_upload(image_bytes(seed=next(_seed)), f"{n}.jpg") for n in range(2)]
    refused = alice_client.post("/", {"images": files})

    assert refused.status_code == 429
    assert "Try again in" in refused.content.decode()
    assert upload_via_api(alice_api).status_code == 201  # the third of three
    assert Upload.objects.count() == 3


def test_more_images_at_once_than_the_burst_allows_are_refused_with_advice(
    alice_client, settings
):
    settings.RECOGNITION_UPLOAD_RATE_BURST = "2/min"
    files = [as_upload(image_bytes(seed=next(_seed)), f"{n}.jpg") for n in range(3)]

    response = alice_client.post("/", {"images": files})

    assert response.status_code == 429
    assert "At most 2 images can be sent at a time: choose fewer." in response.content.decode()
    assert not Upload.objects.exists()


def test_the_page_session_and_token_share_one_budget_per_user(alice, alice_api, burst_of_two):
    session = Client()
    session.force_login(alice)
    assert upload_via_page(session).status_code == 200
    assert upload_via_api(alice_api).status_code == 201

    assert upload_via_page(session).status_code == 429
    assert upload_via_api(alice_api).status_code == 429


def test_one_users_uploads_do_not_use_up_anothers_budget(alice_api, bob_api, burst_of_two):
    for _ in range(2):
        upload_via_api(alice_api)
    assert upload_via_api(alice_api).status_code == 429

    assert upload_via_api(bob_api).status_code == 201


def test_reading_history_is_not_counted_as_uploading(alice_api, alice_client, burst_of_two):
    for _ in range(5):
        assert alice_api.get(API).status_code == 200
        assert alice_client.get("/").status_code == 200

    assert upload_via_api(alice_api).status_code == 201


def test_a_throttled_upload_is_refused_before_its_image_is_even_decoded(
    alice_api, burst_of_two, monkeypatch
):
    decoded = []
    real_decode = services.decode_image
    monkeypatch.setattr(
        services, "decode_image", lambda *a, **k: decoded.append(1) or real_decode(*a, **k)
    )
    for _ in range(2):
        upload_via_api(alice_api)

    upload_via_api(alice_api)

    assert len(decoded) == 2


# --- Login attempts -----------------------------------------------------------------


@pytest.fixture
def three_logins_a_minute(settings):
    settings.RECOGNITION_LOGIN_RATE = "3/min"


def attempt(client, username="alice", password="wrong", **extra):
    return client.post(LOGIN, {"username": username, "password": password}, **extra)


def test_too_many_login_attempts_get_the_form_again_with_429_and_retry_after(
    alice, three_logins_a_minute
):
    client = Client()
    assert [attempt(client).status_code for _ in range(3)] == [200, 200, 200]

    response = attempt(client, password=PASSWORD)

    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    html = response.content.decode()
    assert "Too many login attempts. Try again in" in html
    assert 'name="password"' in html
    assert "_auth_user_id" not in client.session  # even the right password is not tried


def test_login_attempts_for_one_username_are_limited_from_any_address(
    alice, three_logins_a_minute
):
    for number in range(3):
        attempt(Client(REMOTE_ADDR=f"203.0.113.{number}"))

    response = attempt(Client(REMOTE_ADDR="203.0.113.99"), password=PASSWORD)

    assert response.status_code == 429


def test_login_attempts_from_one_address_are_limited_across_usernames(
    alice, three_logins_a_minute
):
    client = Client(REMOTE_ADDR="198.51.100.7")
    for name in ("carol", "dave", "erin"):
        attempt(client, username=name)

    assert attempt(client, username="alice", password=PASSWORD).status_code == 429
    # Another address still logs alice in.
    assert attempt(Client(REMOTE_ADDR="198.51.100.8"), password=PASSWORD).status_code == 302


def test_a_forged_x_forwarded_for_does_not_reset_the_address_limit(alice, three_logins_a_minute):
    client = Client(REMOTE_ADDR="198.51.100.7")
    for number, name in enumerate(("carol", "dave", "erin")):
        attempt(client, username=name, HTTP_X_FORWARDED_FOR=f"192.0.2.{number}")

    response = attempt(client, username="frank", HTTP_X_FORWARDED_FOR="192.0.2.200")

    assert response.status_code == 429


def test_the_admin_login_is_limited_too(superuser, three_logins_a_minute):
    client = Client()
    for _ in range(3):
        client.post("/admin/login/", {"username": "root", "password": "wrong"})

    response = client.post("/admin/login/", {"username": "root", "password": PASSWORD})

    assert response.status_code == 429
    assert "Too many login attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_normal_logins_are_not_limited(alice):
    client = Client()
    for _ in range(5):
        assert attempt(client, password=PASSWORD).status_code == 302
        client.post("/accounts/logout/")


# --- Counters in Redis, and Redis unreachable (SECURITY.md, "Rate limits") ---------


def redis_cache(url: str) -> dict:
    return {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url,
                        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2}}}


@pytest.fixture
def unreachable_redis():
    """The settings' Redis cache, pointed at a loopback port nobody listens on: every
    connection is refused, as when the server is stopped."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with override_settings(CACHES=redis_cache(f"redis://127.0.0.1:{port}/0")):
        yield


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs REDIS_URL (scripts/with-redis)")
def test_with_redis_url_the_upload_limit_is_counted_in_redis(alice_api, burst_of_two):
    import redis

    with override_settings(CACHES=redis_cache(os.environ["REDIS_URL"])):
        assert [upload_via_api(alice_api).status_code for _ in range(3)] == [201, 201, 429]
        counters = redis.Redis.from_url(os.environ["REDIS_URL"]).keys("*throttle_upload_burst*")
        assert counters
        redis.Redis.from_url(os.environ["REDIS_URL"]).delete(*counters)


def test_uploads_go_through_uncounted_while_redis_is_unreachable(
    alice_api, alice_client, burst_of_two, unreachable_redis, caplog
):
    statuses = [upload_via_api(alice_api).status_code for _ in range(3)]
    statuses.append(upload_via_page(alice_client).status_code)

    assert statuses == [201, 201, 201, 200]  # over the burst of two: nothing counted
    assert Upload.objects.count() == 4
    assert "Rate-limit counters unreachable, upload_burst not counted" in caplog.text


def test_logins_are_refused_with_503_while_redis_is_unreachable(alice, unreachable_redis):
    client = Client()

    response = attempt(client, password=PASSWORD)

    assert response.status_code == 503
    assert "cannot count login attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session  # not even the right password is tried


def test_logins_work_again_once_redis_is_back(alice, unreachable_redis):
    assert attempt(Client(), password=PASSWORD).status_code == 503
    with override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}):
        assert attempt(Client(), password=PASSWORD).status_code == 302


# --- Configuration ------------------------------------------------------------------


def test_the_default_limits_are_thirty_a_minute_a_thousand_a_day_and_ten_logins():
    assert site_settings.RECOGNITION_UPLOAD_RATE_BURST == "30/min"
    assert site_settings.RECOGNITION_UPLOAD_RATE_SUSTAINED == "1000/day"
    assert site_settings.RECOGNITION_LOGIN_RATE == "10/min"


@pytest.mark.parametrize("value", ["5/hour", "1/s", "200/day", "30/min"])
def test_a_rate_is_read_from_the_environment(monkeypatch, value):
    monkeypatch.setenv("RECOGNITION_UPLOAD_RATE_BURST", value)

    assert envrate("RECOGNITION_UPLOAD_RATE_BURST", "30/min") == value


@pytest.mark.parametrize("value", ["30", "thirty/min", "0/min", "-5/min", "30/fortnight", "30/"])
def test_a_bad_rate_stops_the_service_from_starting(monkeypatch, value):
    monkeypatch.setenv("RECOGNITION_UPLOAD_RATE_BURST", value)

    with pytest.raises(ImproperlyConfigured, match="RECOGNITION_UPLOAD_RATE_BURST must be a rate"):
        envrate("RECOGNITION_UPLOAD_RATE_BURST", "30/min")


# --- Two worker processes ----------------------------------------------------------

CREATE_TOKEN = """
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
print(Token.objects.create(user=get_user_model().objects.create_user("alice")).key)
"""


@pytest.mark.slow
def test_two_gunicorn_workers_count_one_users_uploads_against_one_limit(
    tmp_path, prepared_models_dir
):
    """Sync workers (one thread each) take one connection at a time. A request whose
    headers stop half-way holds the worker that accepted it (the first connection in the
    queue), so every later upload is served by the other worker; then the held request is
    completed. With one shared counter it is the fourth upload against a limit of three
    and is refused; with a counter per process it would be its worker's first, and pass."""
    limit = 3
    with live_data(tmp_path, prepared_models_dir) as data:
        token = data.run(CREATE_TOKEN).strip()
        env = {
            "RECOGNITION_UPLOAD_RATE_BURST": f"{limit}/hour",  # an hour: no window runs out
            "GUNICORN_TIMEOUT": "0",  # the held worker sends no heartbeat while it waits
            "GUNICORN_ACCESS_LOG": "-",
            "GUNICORN_CMD_ARGS": "--access-logformat 'served %(p)s %(r)s %(s)s'",
        }
        with gunicorn(data, workers=2, threads=1, env=env) as server:
            workers = set(server.worker_pids())
            body, content_type = multipart_image(image_bytes(seed=7000), "held.jpg")
            held = socket.create_connection((server.host, server.port), timeout=300)
            try:
                held.sendall(f"POST {UPLOAD_PATH}?probe=held HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
                others = [
                    upload(server, token, image_bytes(seed=7001 + n), f"{n}.jpg",
                           path=f"{UPLOAD_PATH}?probe={n}", timeout=300)[0]
                    for n in range(limit + 2)
                ]
                held.sendall(
                    f"Authorization: Token {token}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
                )
                response = http.client.HTTPResponse(held)
                response.begin()
                held_status, held_body = response.status, response.read()
            finally:
                held.close()
        log = server.log.read_text()
    served_by = {probe: int(pid) for pid, probe in re.findall(r"served <(\d+)> POST \S+\?probe=(\w+) ", log)}

    assert len(workers) == 2
    others_by = {served_by[str(n)] for n in range(limit + 2)}
    assert served_by["held"] in workers and others_by <= workers
    assert others_by == workers - {served_by["held"]}  # two processes served the uploads
    assert others == [201] * limit + [429] * 2
    assert held_status == 429, held_body[:300]
    assert b'"throttled"' in held_body
