"""Classification.margin (top-1 minus top-2 probability), for the uncertainty rule.

Rows recorded before it get their margin from their stored rank-1 and rank-2 predictions,
which are the model's two best of the full softmax, so the backfill is exact; a row with a
single prediction (a one-category model) gets its top score.
"""

from django.db import migrations, models

BATCH = 500


def backfill_margins(apps, schema_editor) -> None:
    Classification = apps.get_model("recognition", "Classification")
    Prediction = apps.get_model("recognition", "Prediction")
    last_id = 0
    while True:
        rows = list(Classification.objects.filter(pk__gt=last_id).order_by("pk")[:BATCH])
        if not rows:
            return
        seconds = dict(
            Prediction.objects.filter(classification__in=rows, rank=2).values_list(
                "classification_id", "score"
            )
        )
        for row in rows:
            second = seconds.get(row.pk)
            # Scores were clamped to [0, 1] one by one; the margin keeps within them.
            row.margin = row.top_score if second is None else min(
                max(row.top_score - second, 0.0), row.top_score
            )
        Classification.objects.bulk_update(rows, ["margin"])
        last_id = rows[-1].pk


class Migration(migrations.Migration):

    dependencies = [
        ("recognition", "0004_jobs"),
    ]

    operations = [
        migrations.AddField(
            model_name="classification",
            name="margin",
            field=models.FloatField(default=0.0),
            preserve_default=False,
        ),
        migrations.RunPython(backfill_margins, migrations.RunPython.noop, elidable=True),
        migrations.AddConstraint(
            model_name="classification",
            constraint=models.CheckConstraint(
                condition=models.Q(("margin__gte", 0), ("margin__lte", 1)),
                name="classification_margin_is_a_probability",
            ),
        ),
    ]
