"""WSGI entry point, for gunicorn and friends: `gunicorn classifier_site.wsgi`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "classifier_site.settings")

application = get_wsgi_application()
