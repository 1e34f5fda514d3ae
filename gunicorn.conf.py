"""gunicorn settings for the recognition service; environment variables override."""

import os

bind = f"{os.getenv('HOST', '127.0.0.1')}:{os.getenv('PORT', '8000')}"
# Measured with bench/layouts.py (README, "Performance"): one process whose model uses
# every core; eight request threads, so a full batch of eight can gather while others
# decode and store. A second process (or runner) at one core each gained ~6 % under load
# but doubled memory (or lone-request latency).
workers = int(os.getenv("WEB_CONCURRENCY", "1"))
threads = int(os.getenv("GUNICORN_THREADS", "8"))
timeout = int(os.getenv("GUNICORN_TIMEOUT", "60"))
max_requests = int(os.getenv("GUNICORN_MAX_REQUESTS", "0"))
accesslog = os.getenv("GUNICORN_ACCESS_LOG", "-") or None  # empty: no access log
wsgi_app = "classifier_site.wsgi:application"


def post_worker_init(worker):
    """Load and warm the model before this worker takes its first request."""
    from django.conf import settings

    from recognition.configured_classifier import get_classifier
    from recognition.engine.classifier import ModelUnavailable

    if not settings.RECOGNITION_WARM_UP:
        return
    try:
        get_classifier().warm_up()
    except ModelUnavailable as exc:
        # Serve anyway: pages work and uploads answer 503 with the fix, until it is fixed.
        worker.log.warning("Model unavailable: %s", exc)


def worker_exit(server, worker):
    """Answer the requests already waiting for the model before the worker goes."""
    from recognition.configured_classifier import reset_classifier

    reset_classifier()
