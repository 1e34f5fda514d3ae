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

from .env import (
    BadEnvironmentValue,
    envbool,
    envbucket,
    envdatabase,
    envendpoint,
    envfraction,
    envint,
    envlist,
    envrate,
    envredis,
)

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
    # SQLite creates the file, not its folder: a fresh install given its SECRET_KEY (so
    # nothing else wrote to the data dir yet) must still be able to migrate.
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)

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
# Images, thumbnails and published models: files on the local disk under MEDIA_ROOT (one
# machine), or, with RECOGNITION_S3_BUCKET, objects in an S3-compatible store that every
# node shares. Without AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY boto3 looks for keys in
# its other places (an instance role, ~/.aws).
RECOGNITION_S3_BUCKET = envbucket("RECOGNITION_S3_BUCKET")
AWS_S3_ENDPOINT_URL = envendpoint("AWS_S3_ENDPOINT_URL")
AWS_S3_REGION_NAME = os.getenv("AWS_S3_REGION_NAME", "").strip()
if RECOGNITION_S3_BUCKET:
    _file_storage = {
        "BACKEND": "recognition.storage_backends.ObjectStoreStorage",
        "OPTIONS": {
            "bucket_name": RECOGNITION_S3_BUCKET,
            "endpoint_url": AWS_S3_ENDPOINT_URL or None,
            "region_name": AWS_S3_REGION_NAME or None,
            "access_key": os.getenv("AWS_ACCESS_KEY_ID") or None,
            "secret_key": os.getenv("AWS_SECRET_ACCESS_KEY") or None,
            # Private objects: images reach browsers only through the views that check
            # ownership, never by an object URL, signed or not (SECURITY.md).
            "default_acl": "private",
            "querystring_auth": True,
            # Names derive from content: the same name is the same bytes.
            "file_overwrite": True,
            # Another S3 server's host name takes no bucket sub-domains.
            "addressing_style": "path" if AWS_S3_ENDPOINT_URL else None,
        },
    }
else:
    _file_storage = {"BACKEND": "recognition.storage_backends.AtomicFileSystemStorage"}
STORAGES = {
    "default": _file_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# Without collectstatic (development, tests) whitenoise serves from the source folders.
WHITENOISE_USE_FINDERS = not STATIC_ROOT.joinpath("staticfiles.json").exists()
if WHITENOISE_USE_FINDERS:
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}

# --- Recognition -------------------------------------------------------------------
# Prepared artifacts; separate from DATA_DIR so an image can bake them in.
RECOGNITION_MODELS_DIR = Path(os.getenv("RECOGNITION_MODELS_DIR", DATA_DIR / "models")).resolve()
# Serve this prepared model, pinned, instead of the active one (the newest ActiveModel row).
RECOGNITION_MODEL = os.getenv("RECOGNITION_MODEL") or None
# Each process reads the active-model row at most this often: a newly activated model is
# served by every node within this many seconds of its next request (or worker tick).
RECOGNITION_MODEL_CHECK_SECONDS = envint("RECOGNITION_MODEL_CHECK_SECONDS", 5, minimum=0)
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
# Requests that may wait for or be in a forward pass at once (with MAX_BATCH > 1); one more
# is answered 503 "overloaded" at once instead of joining the line. 0: no limit.
RECOGNITION_MAX_QUEUE = envint("RECOGNITION_MAX_QUEUE", engine_defaults.DEFAULT_MAX_QUEUE, minimum=0)
# The longest a request waits for its forward pass before it is answered "overloaded".
RECOGNITION_QUEUE_TIMEOUT_S = envint("RECOGNITION_QUEUE_TIMEOUT_S", 30, minimum=1)
RECOGNITION_MAX_UPLOAD_BYTES = envint("RECOGNITION_MAX_UPLOAD_BYTES", 10 * 1024 * 1024, minimum=1)
# Pictures one user may import in 24 hours, apart from the interactive upload limits.
RECOGNITION_IMPORT_RATE = envint("RECOGNITION_IMPORT_RATE", 10_000, minimum=1)
# The most one import request may carry: one archive, or all its files together.
RECOGNITION_IMPORT_MAX_ARCHIVE_BYTES = envint(
    "RECOGNITION_IMPORT_MAX_ARCHIVE_BYTES", 512 * 1024 * 1024, minimum=1
)
RECOGNITION_MAX_PIXELS = envint(
    "RECOGNITION_MAX_PIXELS", engine_defaults.DEFAULT_MAX_PIXELS, minimum=1
)
# A ZIP archive's entries, their total once unpacked, and how far one entry may expand
# (zip bombs); each entry also keeps to RECOGNITION_MAX_UPLOAD_BYTES, like an upload.
RECOGNITION_IMPORT_MAX_FILES = envint("RECOGNITION_IMPORT_MAX_FILES", 10_000, minimum=1)
RECOGNITION_IMPORT_MAX_UNCOMPRESSED_BYTES = envint(
    "RECOGNITION_IMPORT_MAX_UNCOMPRESSED_BYTES", 2 * 1024**3, minimum=1
)
RECOGNITION_IMPORT_MAX_RATIO = envint("RECOGNITION_IMPORT_MAX_RATIO", 100, minimum=1)
# Decode large JPEGs at reduced scale (DCT domain) for classification: faster and far
# less memory, but top-1 can differ from full decoding (README, "Performance").
RECOGNITION_JPEG_DRAFT = envbool("RECOGNITION_JPEG_DRAFT", False)
# A classification is "uncertain" when its top-1 probability is below _BELOW or beats the
# second by less than _MARGIN (recognition/uncertainty.py; applied when read, so a change
# needs no recomputation). Defaults measured by bench/uncertainty.py with EfficientNet-Lite0
# on real, augmented and non-photo pictures (README, "Uncertainty").
RECOGNITION_UNCERTAIN_BELOW = envfraction("RECOGNITION_UNCERTAIN_BELOW", 0.2)
RECOGNITION_UNCERTAIN_MARGIN = envfraction("RECOGNITION_UNCERTAIN_MARGIN", 0.005)
# `manage.py finetune --activate` refuses a version whose cross-validated accuracy on the
# known categories (its anchors) is more than this below the base model's (recognition/finetune.py).
RECOGNITION_FINETUNE_MAX_DROP = envfraction("RECOGNITION_FINETUNE_MAX_DROP", 0.02)
RECOGNITION_ALLOW_SIGNUP = envbool("RECOGNITION_ALLOW_SIGNUP", False)
RECOGNITION_WARM_UP = envbool("RECOGNITION_WARM_UP", True)
# Image uploads per user (page, session or token alike): a short burst and a daily budget.
RECOGNITION_UPLOAD_RATE_BURST = envrate("RECOGNITION_UPLOAD_RATE_BURST", "30/min")
RECOGNITION_UPLOAD_RATE_SUSTAINED = envrate("RECOGNITION_UPLOAD_RATE_SUSTAINED", "1000/day")
# Login attempts, counted per client IP and per username separately.
RECOGNITION_LOGIN_RATE = envrate("RECOGNITION_LOGIN_RATE", "10/min")

# Throttle counters must be shared by every gunicorn worker: a per-process cache would
# multiply each limit by the number of workers. With REDIS_URL they live in Redis, shared
# by every node; without it, files in the data dir, which need no server (one machine).
REDIS_URL = envredis("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # An unreachable Redis must fail a request quickly, not hang it
            # (SECURITY.md, "Rate limits" says what the limits do then).
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": os.getenv("RECOGNITION_CACHE_DIR", str(DATA_DIR / "cache")),
            "OPTIONS": {"MAX_ENTRIES": 20_000},
        }
    }

# --- Background work (Celery; classifier_site/celery.py, recognition/tasks.py) -------
# The broker is Redis when REDIS_URL is set, so workers can run on any machine. Without
# it, kombu's filesystem transport under the data dir: no server to install. README,
# "Background work", says why this one and not the SQLAlchemy transport. Whatever the
# broker, the database is the truth about work: tasks.sweep() queues again what a dead
# worker left behind.
CELERY_BROKER_URL = REDIS_URL or "filesystem://"
_BROKER_DIR = DATA_DIR / "broker"
CELERY_BROKER_TRANSPORT_OPTIONS = (
    # Bounded like the cache's: a Redis that stops answering (not only one that refuses)
    # must not hold an upload's response for minutes; the sweep queues what was missed.
    {"socket_connect_timeout": 2, "socket_timeout": 5}
    if REDIS_URL
    else {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "control_folder": str(_BROKER_DIR / "control"),
    }
)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Queuing from a request tries twice, briefly, then leaves the work to the sweep.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5}
# Acknowledge after the task ran, not before: a worker killed mid-task leaves the message
# to be delivered again (on brokers that can), and the tasks are idempotent.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True  # results live in the database rows, not the broker
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Threads in one process: a kill takes all of its work with it (nothing half-orphaned),
# and image and model work release the GIL.
CELERY_WORKER_POOL = "threads"
CELERY_WORKER_CONCURRENCY = envint("CELERY_WORKER_CONCURRENCY", 2, minimum=1)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A pending thumbnail whose claim has not been renewed for this long belongs to a dead
# worker and is queued again; a live worker renews it every third of this.
RECOGNITION_TASK_STALE_SECONDS = envint("RECOGNITION_TASK_STALE_SECONDS", 60, minimum=1)
# How often each worker sweeps for such work (and checks the active model).
RECOGNITION_TASK_SWEEP_SECONDS = envint("RECOGNITION_TASK_SWEEP_SECONDS", 30, minimum=1)

# Small files stay in memory; anything larger is spooled to a temporary file.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
# A bulk import may send this many `files` parts (Django refuses more than 100 by default).
DATA_UPLOAD_MAX_NUMBER_FILES = 10_000
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
    # The level on every line: operators (and tests/cluster) look for ERROR lines.
    "formatters": {"level": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "level"}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "ERROR"}},
}
