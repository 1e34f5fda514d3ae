from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from recognition import active_model


class Command(BaseCommand):
    help = (
        "Make a prepared model the active model of every web node and worker (without a "
        "restart: a web node within RECOGNITION_MODEL_CHECK_SECONDS, a worker at its next "
        "sweep), or with --rollback go back to the model that was active before."
    )

    def add_arguments(self, parser):
        parser.add_argument("key", nargs="?", help="a prepared build, e.g. resnet18-1a2b3c4d5e6f")
        parser.add_argument(
            "--rollback", action="store_true", help="activate the previously active model again"
        )

    def handle(self, *args, **options):
        key, rollback = options["key"], options["rollback"]
        if bool(key) == rollback:
            raise CommandError(
                "Name the model to activate (`activate_model KEY`) or pass --rollback, not both."
            )
        try:
            before = active_model.current_key()
            row = active_model.rollback() if rollback else active_model.activate(key)
        except active_model.ActivationRefused as exc:
            raise CommandError(str(exc)) from None
        except DatabaseError as exc:
            raise CommandError(
                f"The active model is a database row, and the database cannot be used ({exc}). "
                "Check DATABASE_URL and run `python manage.py migrate`, then try again."
            ) from None
        if row.key == before:
            return f"{row.key} is already the active model; nothing to do."
        served_within = settings.RECOGNITION_MODEL_CHECK_SECONDS
        pinned = (
            f" Processes started with RECOGNITION_MODEL={settings.RECOGNITION_MODEL} stay on it."
            if settings.RECOGNITION_MODEL
            else ""
        )
        return (
            f"{row.key} is now the active model (before: {row.previous_key or 'none'}); every "
            f"web node serves it within {served_within} s of its next request, every worker "
            f"within {settings.RECOGNITION_TASK_SWEEP_SECONDS} s.{pinned}"
        )
