"""Reactions to changes made outside this app's services, connected in AppConfig.ready()."""

from __future__ import annotations

from django.db import models

from .models import Upload
from .services import upload_delete


def delete_uploads_of_deleted_user(sender: type, instance: models.Model, **kwargs: object) -> None:
    """A deleted account takes its pictures along, through the same service as any
    deletion; a plain cascade would leave their images and files behind."""
    for upload_id in Upload.objects.filter(user=instance).values_list("pk", flat=True):
        upload_delete(user=instance, upload_id=upload_id)
