# Loaded with Django, so tasks queued from the web process use this project's Celery app.
from .celery import app as celery_app

__all__ = ("celery_app",)
