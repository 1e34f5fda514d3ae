"""Who may reach what: every URL in the URLconf, for an anonymous visitor, the owner of
an upload (Alice), another user (Bob) and an administrator; CSRF on every form; media
never served by guessable URL; production cookies and headers; `check --deploy`.

The matrix is checked against the URLconf itself, so a new URL without a row here fails.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Iterator
from http.cookies import Morsel, SimpleCookie
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.authtoken.models import Token

from recognition.imports import import_start
from recognition.middleware import CONTENT_SECURITY_POLICY
from recognition.models import Upload
from recognition.services import upload_classify
from tests.live_service import LiveData, LiveResponse, LiveServer, fetch, gunicorn, live_data
from tests.web_fixtures import PASSWORD, as_upload, image_bytes, media_files

# Four users per test: PBKDF2's deliberate slowness would dominate the matrix.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_password_hashing")]

ROLES = ("anonymous", "owner", "other", "admin")
LOGIN = "/accounts/login/"


def url_names() -> dict[str, str]:
    """Every named URL outside the admin site: name -> route."""

    def walk(patterns, prefix="", namespace=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = namespace + (f"{pattern.namespace}:" if pattern.namespace else "")
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
            elif isinstance(pattern, URLPattern):
                route = prefix + str(pattern.pattern)
                yield namespace + (pattern.name or f"<unnamed {route}>"), route

    routes = walk(get_resolver().url_patterns)
    return {name: route for name, route in routes if not name.startswith("admin:")}


# name -> (method, {role: expected status}); 302 means "sent to the login page" for the
# anonymous visitor and "sent on" for a user who is already logged in.
PRIVATE_PAGE = {"anonymous": 302, "owner": 200, "other": 200, "admin": 200}
OWNED_PAGE = {"anonymous": 302, "owner": 200, "other": 404, "admin": 404}
PRIVATE_API = {"anonymous": 401, "owner": 200, "other": 200, "admin": 200}
OWNED_API = {"anonymous": 401, "owner": 200, "other": 404, "admin": 404}
PUBLIC = {role: 200 for role in ROLES}

MATRIX: dict[str, tuple[str, dict[str, int]]] = {
    "login": ("get", {"anonymous": 200, "owner": 302, "other": 302, "admin": 302}),
    "logout": ("post", {role: 302 for role in ROLES}),
    "signup": ("get", {role: 404 for role in ROLES}),  # closed unless RECOGNITION_ALLOW_SIGNUP
    "upload": ("get", PRIVATE_PAGE),
    "history": ("get", PRIVATE_PAGE),
    "upload-detail": ("get", OWNED_PAGE),
    "upload-delete": ("get", OWNED_PAGE),
    # An empty form: the owner is told the label is empty.
    "upload-correction": ("post", {"anonymous": 302, "owner": 400, "other": 404, "admin": 404}),
    "upload-image": ("get", OWNED_PAGE),
    "upload-thumbnail": ("get", OWNED_PAGE),
    # Reviewers only (the admin is a superuser); to anyone else the queue is not there.
    "review": ("get", {"anonymous": 302, "owner": 404, "other": 404, "admin": 200}),
    # An empty form: the reviewer is sent back to the queue, told to decide.
    "review-decide": ("post", {"anonymous": 302, "owner": 404, "other": 404, "admin": 302}),
    # Alice's picture is unsure (random weights), so it is one the queue shows.
    "review-image": ("get", {"anonymous": 302, "owner": 404, "other": 404, "admin": 200}),
    "imports": ("get", PRIVATE_PAGE),
    "import-detail": ("get", OWNED_PAGE),
    # The owner is sent back to the import's page, cancelled.
    "import-cancel": ("post", {"anonymous": 302, "owner": 302, "other": 404, "admin": 404}),
    # Reviewers and staff only (the admin here is a superuser); nobody else is told of it.
    "review-statistics": ("get", {"anonymous": 302, "owner": 404, "other": 404, "admin": 200}),
    "api:classifications": ("get", PRIVATE_API),
    "api:classification": ("get", OWNED_API),
    "api:classifications-export": ("get", PRIVATE_API),
    # Withdrawing a correction that is not there is a 204 too.
    "api:classification-correction": ("delete", {**OWNED_API, "owner": 204}),  # each user's own rows only
    "api:model-active": ("get", PRIVATE_API),
    # Staff only; without ?from=&to= and no model active before this one, a 400 that says so.
    "api:models-compare": ("get", {"anonymous": 401, "owner": 403, "other": 403, "admin": 400}),
    "api:imports": ("get", PRIVATE_API),
    "api:import": ("get", OWNED_API),
    "api:import-cancel": ("post", OWNED_API),
    "api:health": ("get", PUBLIC),
    "api:schema": ("get", PUBLIC),
    "api:docs": ("get", PUBLIC),
}


@pytest.fixture
def alices_upload(alice) -> Upload:
    return upload_classify(user=alice, file=as_upload(image_bytes(seed=41), "mine.jpg")).upload


@pytest.fixture
def client_for(alice, bob, superuser):
    users = {"owner": alice, "other": bob, "admin": superuser}

    def make(role: str) -> Client:
        client = Client()
        if role != "anonymous":
            client.force_login(users[role])
        return client

    return make


def url_for(name: str, upload: Upload) -> str:
    route = url_names()[name]
    if "<int:job_id>" in route:  # an import of the owner's
        job = import_start(user=upload.user, files=[as_upload(image_bytes(seed=42), "job.jpg")])
        return reverse(name, kwargs={"job_id": job.pk})
    return reverse(name, kwargs={"upload_id": upload.pk} if "<int:upload_id>" in route else None)


def test_every_url_in_the_urlconf_has_a_row_in_the_matrix():
    assert set(url_names()) == set(MATRIX)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name", list(MATRIX))
def test_each_url_answers_each_role_as_the_matrix_says(client_for, alices_upload, name, role):
    method, expected = MATRIX[name]
    url = url_for(name, alices_upload)

    response = getattr(client_for(role), method)(url)

    assert response.status_code == expected[role]
    if expected[role] == 302 and role == "anonymous" and name != "logout":
        assert response["Location"].startswith(f"{LOGIN}?next=")
    if expected[role] == 404:
        assert "mine.jpg" not in response.content.decode(errors="replace")


@pytest.mark.parametrize("role", ["other", "admin"])
def test_another_users_upload_cannot_be_deleted_by_anyone_else(client_for, alices_upload, role):
    page = client_for(role).post(f"/uploads/{alices_upload.pk}/delete/")
    api = client_for(role).delete(f"/api/v1/classifications/{alices_upload.pk}/")

    assert (page.status_code, api.status_code) == (404, 404)
    assert Upload.objects.filter(pk=alices_upload.pk).exists()


def test_the_signup_page_is_open_only_to_visitors_when_allowed(client_for, settings):
    settings.RECOGNITION_ALLOW_SIGNUP = True

    assert client_for("anonymous").get("/accounts/signup/").status_code == 200
    assert client_for("owner").get("/accounts/signup/").status_code == 302


def admin_urls_without_arguments() -> list[str]:
    resolver = get_resolver()
    names = []
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver) and pattern.namespace == "admin":
            names = [
                f"admin:{p.name}"
                for p in _flatten(pattern.url_patterns)
                if p.name and not p.pattern.converters and "(?P<" not in str(p.pattern)
            ]
    return sorted(set(names) - {"admin:login", "admin:logout"})


def _flatten(patterns):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _flatten(pattern.url_patterns)
        else:
            yield pattern


@pytest.mark.parametrize("name", admin_urls_without_arguments())
def test_every_admin_page_is_for_staff_only(client_for, name):
    url = reverse(name)

    for role in ("anonymous", "owner"):
        response = client_for(role).get(url)
        assert response.status_code == 302, role
        assert response["Location"].startswith("/admin/login/")
    response = client_for("admin").get(url)
    # 403: the add pages of models only the upload service writes, and autocomplete
    # without a model named in its query. Adding an active model is activating one.
    forbidden_even_to_staff = name == "admin:autocomplete" or (
        name.endswith("_add") and "recognition_" in name and "activemodel" not in name
    )
    assert response.status_code == (403 if forbidden_even_to_staff else 200)


# --- Media ----------------------------------------------------------------------------


def test_media_has_no_url_of_its_own():
    assert settings.MEDIA_URL is None


@pytest.mark.parametrize("role", ROLES)
def test_guessing_the_path_of_a_stored_image_finds_nothing(client_for, alices_upload, role):
    [relative] = media_files()
    guesses = [f"/media/{relative}", f"/{relative}", f"/static/../media/{relative}", "/media/"]

    for guess in guesses:
        response = client_for(role).get(guess)
        assert response.status_code == 404, guess
        assert not response.get("Content-Type", "").startswith("image/")


def test_an_owners_image_comes_with_a_sandboxing_policy(client_for, alices_upload):
    response = client_for("owner").get(f"/uploads/{alices_upload.pk}/image")

    assert response.status_code == 200
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"
    assert response["X-Content-Type-Options"] == "nosniff"


# --- CSRF -------------------------------------------------------------------------------


def csrf_client(user=None) -> Client:
    client = Client(enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user)
    return client


def test_logging_in_without_a_csrf_token_is_forbidden_and_with_one_works(alice):
    client = csrf_client()

    refused = client.post(LOGIN, {"username": "alice", "password": PASSWORD})
    client.get(LOGIN)
    accepted = client.post(
        LOGIN,
        {
            "username": "alice",
            "password": PASSWORD,
            "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
        },
    )

    assert refused.status_code == 403
    assert accepted.status_code == 302


def test_uploading_on_the_page_without_a_csrf_token_is_forbidden(alice):
    response = csrf_client(alice).post("/", {"images": as_upload(image_bytes(seed=42))})

    assert response.status_code == 403
    assert not Upload.objects.exists()
    assert not media_files()


def test_deleting_on_the_page_without_a_csrf_token_is_forbidden(alice, alices_upload):
    response = csrf_client(alice).post(f"/uploads/{alices_upload.pk}/delete/")

    assert response.status_code == 403
    assert Upload.objects.filter(pk=alices_upload.pk).exists()


def test_logging_out_without_a_csrf_token_is_forbidden(alice):
    client = csrf_client(alice)

    response = client.post("/accounts/logout/")

    assert response.status_code == 403
    assert client.get("/history/").status_code == 200  # still logged in


def test_signing_up_without_a_csrf_token_is_forbidden(settings, django_user_model):
    settings.RECOGNITION_ALLOW_SIGNUP = True
    password = "a much longer passphrase 7"

    response = csrf_client().post(
        "/accounts/signup/", {"username": "mallory", "password1": password, "password2": password}
    )

    assert response.status_code == 403
    assert not django_user_model.objects.filter(username="mallory").exists()


@pytest.mark.parametrize("method", ["post", "delete"])
def test_the_api_with_a_session_needs_a_csrf_token(alice, alices_upload, method):
    url = "/api/v1/classifications/" + (f"{alices_upload.pk}/" if method == "delete" else "")
    data = {"image": as_upload(image_bytes(seed=43))} if method == "post" else None

    response = getattr(csrf_client(alice), method)(url, data)

    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]
    assert Upload.objects.count() == 1


def test_the_api_with_a_token_needs_no_csrf_token(alice):
    token = Token.objects.create(user=alice)

    response = csrf_client().post(
        "/api/v1/classifications/",
        {"image": as_upload(image_bytes(seed=44))},
        HTTP_AUTHORIZATION=f"Token {token.key}",
    )

    assert response.status_code == 201


# --- Headers ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/history/", LOGIN, "/api/v1/docs/", "/admin/"])
def test_pages_forbid_inline_scripts_and_foreign_sources(client_for, path):
    response = client_for("anonymous" if path == LOGIN else "admin").get(path)

    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert policy == CONTENT_SECURITY_POLICY
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "script-src" not in policy  # scripts fall back to 'self': no inline, no eval
    inline_scripts = re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", response.content.decode())
    assert inline_scripts == []


def test_the_docs_page_loads_its_script_from_this_server_under_the_policy():
    html = Client().get("/api/v1/docs/").content.decode()
    script_urls = re.findall(r'<script src="([^"]+)"', html)

    assert len(script_urls) == 3
    for url in script_urls:
        response = Client().get(url.replace("&amp;", "&"))
        assert response.status_code == 200, url
        body = b"".join(response) if response.streaming else response.content
        assert body.strip()
    assert any("script" in url and "/api/v1/docs/" in url for url in script_urls)


# --- Production -------------------------------------------------------------------------

# What a reverse proxy terminating TLS sends on: the public name, and that it was https.
HOST = "example.org"
VIA_PROXY = {"Host": HOST, "X-Forwarded-Proto": "https"}

CREATE_ALICE = """
import sys
from django.contrib.auth import get_user_model
get_user_model().objects.create_user("alice", password=sys.argv[1])
"""


@dataclasses.dataclass(frozen=True)
class Production:
    data: LiveData
    server: LiveServer


@pytest.fixture(scope="module")
def production(tmp_path_factory, prepared_models_dir) -> Iterator[Production]:
    """The service as production runs it: gunicorn behind a TLS proxy (HTTPS=1,
    BEHIND_PROXY=1), DEBUG off, a real secret, one allowed host; Alice can log in."""
    with live_data(tmp_path_factory.mktemp("production"), prepared_models_dir) as data:
        data = dataclasses.replace(data, env={
            **data.env,
            "SECRET_KEY": secrets.token_urlsafe(60),
            "HTTPS": "1",
            "BEHIND_PROXY": "1",
            "ALLOWED_HOSTS": HOST,
            "DEBUG": "0",
        })
        data.run(CREATE_ALICE, PASSWORD)
        with gunicorn(data, workers=1, threads=2, probe_headers=VIA_PROXY) as server:
            yield Production(data, server)


def cookies_set(response: LiveResponse) -> dict[str, Morsel]:
    """Each Set-Cookie header of a real response, parsed: name -> its attributes."""
    jar = SimpleCookie()
    for header in response.headers.get_all("Set-Cookie") or []:
        jar.load(header)
    return dict(jar)


def log_in_through_the_form(server: LiveServer) -> tuple[LiveResponse, LiveResponse]:
    """GET the login page and POST its form with the CSRF cookie and token, as a browser
    on https://example.org does; both responses."""
    page = fetch(server, "GET", LOGIN, headers=VIA_PROXY)
    csrf = cookies_set(page)["csrftoken"].value
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.body.decode())[1]
    form = urlencode({"csrfmiddlewaretoken": token, "username": "alice", "password": PASSWORD})
    logged_in = fetch(server, "POST", LOGIN, body=form.encode(), headers={
        **VIA_PROXY,
        "Cookie": f"csrftoken={csrf}",
        "Origin": f"https://{HOST}",
        "Referer": f"https://{HOST}{LOGIN}",
        "Content-Type": "application/x-www-form-urlencoded",
    })
    return page, logged_in


@pytest.mark.slow
def test_production_settings_pass_djangos_deploy_check(production):
    out = production.data.manage("check", "--deploy")

    assert "System check identified no issues" in out


@pytest.mark.slow
def test_production_sends_plain_http_to_https(production):
    response = fetch(production.server, "GET", LOGIN, headers={"Host": HOST})

    assert response.status == 301
    assert response.headers["Location"] == f"https://{HOST}{LOGIN}"


@pytest.mark.slow
def test_production_responses_carry_the_security_headers(production):
    response = fetch(production.server, "GET", LOGIN, headers=VIA_PROXY)
    headers = response.headers

    assert response.status == 200
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "same-origin"
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"


@pytest.mark.slow
def test_production_cookies_are_secure_and_the_session_cookie_is_hidden_from_scripts(production):
    page, logged_in = log_in_through_the_form(production.server)
    session = cookies_set(logged_in)["sessionid"]
    csrf_cookies = [cookies_set(page)["csrftoken"], cookies_set(logged_in)["csrftoken"]]
    home = fetch(production.server, "GET", "/", headers={
        **VIA_PROXY, "Cookie": f"sessionid={session.value}",
    })

    assert page.status == 200
    assert (logged_in.status, logged_in.headers["Location"]) == (302, "/")
    assert home.status == 200  # the cookie is a real, logged-in session
    assert (session["secure"], session["httponly"], session["samesite"]) == (True, True, "Lax")
    for csrf in csrf_cookies:  # set on the form, rotated at login
        assert (csrf["secure"], csrf["samesite"]) == (True, "Lax")
