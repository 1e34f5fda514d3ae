"""Classifications record whether their model ran custom weights, so the detail page no
longer reads model manifests from disk. Rows made before are filled in from the manifests
this server still has; the rest stay unknown (None)."""

from pathlib import Path

from django.conf import settings
from django.db import migrations, models


def fill_from_manifests(apps, schema_editor):
    from recognition.engine.manifest import ArtifactError, Manifest

    Classification = apps.get_model("recognition", "Classification")
    versions = Classification.objects.values_list("model_name", "model_version").distinct()
    for name, version in versions:
        try:
            manifest = Manifest.read(Path(settings.RECOGNITION_MODELS_DIR) / f"{name}-{version}")
        except ArtifactError:
            continue
        Classification.objects.filter(model_name=name, model_version=version).update(
            custom_weights=manifest.custom
        )


class Migration(migrations.Migration):
    dependencies = [
        ("recognition", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="classification",
            name="custom_weights",
            field=models.BooleanField(null=True),
        ),
        migrations.RunPython(fill_from_manifests, migrations.RunPython.noop),
    ]
