"""Settings for the image recognition service.

Every value comes from an environment variable with a safe default for local use,
so one module serves development, tests and production alike. Typed values are read
through classifier_site/env.py, which stops the process on a bad value with a message
naming the variable.
"""

import os
import secrets
from pathlib import Path

from recognition.engine import defaults as engine_defaults

from .env import BadEnvironmentValue, envbool, envdatabase, envint, envlist, envrate

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.getenv("RECOGNITION_DATA_DIR", BASE_DIR / "var")).resolve()


def _local_secret_key() -> str:
    """A key generated once and kept in the data dir, so sessions survive restarts."""
    path = DATA_DIR / "secret_key"
    if path.exists():
        return path.read_text().strip()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    tmp = path.with_name(f".secret_key.{os.getpid()}")
    tmp.write_text(key)
    tmp.chmod(0o600)
    # Another process may have won the race; link() fails then and we read its key.
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()


SECRET_KEY = os.getenv("SECRET_KEY") or _local_secret_key()
DEBUG = envbool("DEBUG", False)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "recognition",
]

MIDDLEWARE = [
    "recognition.middleware.ContentSecurityPolicyMiddleware",
    "recognition.middleware.RejectOversizedBodyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "recognition.middleware.ErrorResponseMiddleware",
]

ROOT_URLCONF = "classifier_site.urls"
WSGI_APPLICATION = "classifier_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "recognition.context_processors.recognition",
            ],
        },
    },
]

DATABASES = {
    "default": envdatabase(
        "DATABASE_URL",
        f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets readers work while an upload writes; IMMEDIATE takes the write lock
        # at BEGIN so two concurrent uploads queue instead of failing with "locked".
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "upload"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.getenv("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.getenv("STATIC_ROOT", BASE_DIR / "staticfiles"))
MEDIA_ROOT = Path(os.getenv("MEDIA_ROOT", DATA_DIR / "media"))
# Media are never served by URL: images go out through views that check ownership.
MEDIA_URL = None
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# Without collectstatic (development, tests) whitenoise serves from the source folders.
WHITENOISE_USE_FINDERS = not STATIC_ROOT.joinpath("staticfiles.json").exists()
if WHITENOISE_USE_FINDERS:
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}

# --- Recognition -------------------------------------------------------------------
# Prepared artifacts; separate from DATA_DIR so an image can bake them in.
RECOGNITION_MODELS_DIR = Path(os.getenv("RECOGNITION_MODELS_DIR", DATA_DIR / "models")).resolve()
# Serve this prepared model instead of the one prepare_model made active last.
RECOGNITION_MODEL = os.getenv("RECOGNITION_MODEL") or None
RECOGNITION_TORCH_THREADS = envint("RECOGNITION_TORCH_THREADS", None, minimum=1)
RECOGNITION_BACKEND = os.getenv("RECOGNITION_BACKEND", engine_defaults.DEFAULT_BACKEND)
if RECOGNITION_BACKEND not in engine_defaults.BACKENDS:
    raise BadEnvironmentValue(
        f"RECOGNITION_BACKEND must be one of {', '.join(engine_defaults.BACKENDS)}, "
        f"not {RECOGNITION_BACKEND!r}"
    )
# Concurrent requests share one forward pass of up to this many images, waiting at most
# this long for company (only while other requests are on their way). 1 turns it off.
RECOGNITION_MAX_BATCH = envint("RECOGNITION_MAX_BATCH", engine_defaults.DEFAULT_MAX_BATCH, minimum=1)
RECOGNITION_BATCH_WAIT_MS = envint(
    "RECOGNITION_BATCH_WAIT_MS", engine_defaults.DEFAULT_MAX_WAIT_MS, minimum=0
)
# Forward passes that run at once, each on its own batch (with MAX_BATCH > 1).
RECOGNITION_BATCH_RUNNERS = envint("RECOGNITION_BATCH_RUNNERS", 1, minimum=1)
RECOGNITION_MAX_UPLOAD_BYTES = envint("RECOGNITION_MAX_UPLOAD_BYTES", 10 * 1024 * 1024, minimum=1)
RECOGNITION_MAX_PIXELS = envint(
    "RECOGNITION_MAX_PIXELS", engine_defaults.DEFAULT_MAX_PIXELS, minimum=1
)
# Decode large JPEGs at reduced scale (DCT domain) for classification: faster and far
# less memory, but top-1 can differ from full decoding (README, "Performance").
RECOGNITION_JPEG_DRAFT = envbool("RECOGNITION_JPEG_DRAFT", False)
RECOGNITION_ALLOW_SIGNUP = envbool("RECOGNITION_ALLOW_SIGNUP", False)
RECOGNITION_WARM_UP = envbool("RECOGNITION_WARM_UP", True)
# Image uploads per user (page, session or token alike): a short burst and a daily budget.
RECOGNITION_UPLOAD_RATE_BURST = envrate("RECOGNITION_UPLOAD_RATE_BURST", "30/min")
RECOGNITION_UPLOAD_RATE_SUSTAINED = envrate("RECOGNITION_UPLOAD_RATE_SUSTAINED", "1000/day")
# Login attempts, counted per client IP and per username separately.
RECOGNITION_LOGIN_RATE = envrate("RECOGNITION_LOGIN_RATE", "10/min")

# Throttle counters must be shared by every gunicorn worker: a per-process cache would
# multiply each limit by the number of workers. Files in the data dir need no server.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": os.getenv("RECOGNITION_CACHE_DIR", str(DATA_DIR / "cache")),
        "OPTIONS": {"MAX_ENTRIES": 20_000},
    }
}

# Small files stay in memory; anything larger is spooled to a temporary file.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_PERMISSIONS = 0o640

REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header turns "not logged in" into 401, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "recognition.api.errors.exception_handler",
    # The client IP for throttling: REMOTE_ADDR, or the address our one proxy saw. DRF's
    # default (None) believes any X-Forwarded-For, so a client could pick its own IP.
    "NUM_PROXIES": 1 if envbool("BEHIND_PROXY", False) else 0,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Image recognition API",
    "DESCRIPTION": "Upload images, get their top ImageNet labels, browse your history.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Security ----------------------------------------------------------------------
# Behind TLS set HTTPS=1: secure cookies, HSTS and the redirect all follow.
HTTPS = envbool("HTTPS", False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
if envbool("BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "ERROR"}},
}
