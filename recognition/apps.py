from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_migrate, pre_delete


class RecognitionConfig(AppConfig):
    name = "recognition"
    verbose_name = "Image recognition"

    def ready(self) -> None:
        from . import storage_checks  # noqa: F401 - registers the object store's check
        from . import redis_checks  # noqa: F401 - registers Redis' check
        from .signals import delete_uploads_of_deleted_user, ensure_reviewers_group

        pre_delete.connect(
            delete_uploads_of_deleted_user,
            sender=settings.AUTH_USER_MODEL,
            dispatch_uid="recognition.delete_uploads_of_deleted_user",
        )
        post_migrate.connect(
            ensure_reviewers_group, sender=self, dispatch_uid="recognition.ensure_reviewers_group"
        )
