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


REVIEWERS_GROUP = "Reviewers"


def ensure_reviewers_group(sender, apps=None, **kwargs) -> None:
    """The group that gives the review permission (recognition/review.py), there after
    every migrate and every flush alike; staff put people in it in the admin. The
    permission is made here too, whichever post_migrate handler runs first. A flush
    sends no `apps`: the models as they are now."""
    if apps is None:
        from django.apps import apps
    try:
        ContentType = apps.get_model("contenttypes", "ContentType")
        Permission = apps.get_model("auth", "Permission")
        Group = apps.get_model("auth", "Group")
        apps.get_model("recognition", "Correction")
    except LookupError:  # migrated back to before corrections existed
        return
    content_type, _ = ContentType.objects.get_or_create(app_label="recognition", model="correction")
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type,
        codename="review_corrections",
        defaults={"name": "Can review corrections and uncertain results"},
    )
    group, _ = Group.objects.get_or_create(name=REVIEWERS_GROUP)
    group.permissions.add(permission)
