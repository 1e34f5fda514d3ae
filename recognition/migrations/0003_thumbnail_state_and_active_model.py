"""Thumbnails become background work whose state the database keeps, and the active
model becomes a row every node reads instead of a file beside one node's artifacts."""

import json
from pathlib import Path

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.utils import timezone


def adopt_active_pointer(apps, schema_editor):
    """The active model used to be a file beside the artifacts (active.json); an upgraded
    server keeps serving what it served."""
    ActiveModel = apps.get_model("recognition", "ActiveModel")
    pointer = Path(settings.RECOGNITION_MODELS_DIR) / "active.json"
    try:
        key = json.loads(pointer.read_text(encoding="utf-8"))["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    if isinstance(key, str) and key:
        ActiveModel.objects.create(key=key, activated_at=timezone.now())


class Migration(migrations.Migration):

    dependencies = [
        ('recognition', '0002_classification_custom_weights'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='ActiveModel',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key', models.CharField(help_text='A prepared build, e.g. resnet18-1a2b3c4d5e6f.', max_length=100)),
                ('previous_key', models.CharField(blank=True, help_text='What was active before: the rollback target.', max_length=100)),
                ('activated_at', models.DateTimeField(db_index=True)),
            ],
            options={
                'ordering': ['-activated_at', '-id'],
                'get_latest_by': ['activated_at', 'id'],
            },
        ),
        migrations.AddField(
            model_name='storedimage',
            name='thumbnail_attempts',
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='storedimage',
            name='thumbnail_claimed_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='storedimage',
            name='thumbnail_error',
            field=models.CharField(blank=True, max_length=200),
        ),
        migrations.AddField(
            model_name='storedimage',
            name='thumbnail_state',
            field=models.CharField(choices=[('pending', 'Pending'), ('ready', 'Ready'), ('failed', 'Failed')], default='pending', max_length=10),
        ),
        migrations.AddIndex(
            model_name='storedimage',
            index=models.Index(fields=['thumbnail_state', 'thumbnail_claimed_at'], name='recognition_thumbna_e8d4f4_idx'),
        ),
        migrations.AddField(
            model_name='activemodel',
            name='activated_by',
            field=models.ForeignKey(blank=True, help_text='Empty when a command or a deployment activated it.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.RunPython(adopt_active_pointer, migrations.RunPython.noop),
    ]
