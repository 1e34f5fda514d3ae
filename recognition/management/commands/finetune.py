import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from tqdm import tqdm

from recognition import active_model, finetune, reclassify


class Command(BaseCommand):
    help = (
        "Train a new classification head for a model (default: the active one) on the "
        "stored pictures: accepted corrections as labels, new labels as new categories, "
        "confidently classified pictures as anchors. Writes a new custom model version and "
        "reports cross-validated accuracy before and after; activates it only with --activate."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base", metavar="KEY", help="the prepared model to start from")
        parser.add_argument(
            "--activate",
            action="store_true",
            help="make the new version active and reclassify with it, unless accuracy on the "
            "known categories drops more than RECOGNITION_FINETUNE_MAX_DROP",
        )
        parser.add_argument(
            "--json", action="store_true", help="end with one line of JSON describing the result"
        )

    def handle(self, *args: str, **options: Any) -> str:
        bar: tqdm | None = None
        reading = options["verbosity"] > 0

        def progress(done: int, failed: int, total: int) -> bool:
            nonlocal bar, reading
            if not reading:
                return True
            if bar is None:
                # tqdm draws with carriage returns, which Django's line-ending wrapper would break.
                bar = tqdm(total=total, unit="image", desc="Reading pictures", file=sys.stderr)
            bar.n = done + failed
            bar.set_postfix(failed=failed, refresh=False)
            bar.refresh()
            if bar.n >= total:
                bar.close()  # training and building follow, without a bar
                reading = False
            return True

        try:
            outcome = finetune.finetune(
                base_key=options["base"], activate=options["activate"], progress=progress
            )
        except (finetune.FinetuneRefused, reclassify.ReclassifyRefused) as exc:
            raise CommandError(exc.message) from None
        except active_model.ActivationRefused as exc:
            raise CommandError(str(exc)) from None
        except DatabaseError as exc:
            raise CommandError(
                f"Fine-tuning reads the corrections from the database, and it cannot be used "
                f"({exc}). Check DATABASE_URL and run `python manage.py migrate`, then try again."
            ) from None
        finally:
            if bar is not None:
                bar.close()
        lines = [outcome.summary()]
        if outcome.activated:
            lines.append(
                f"{outcome.key} is now the active model; reclassification "
                f"#{outcome.reclassification_job} is queued for the workers."
            )
        else:
            lines.append(f"Not activated: `python manage.py activate_model {outcome.key}` does that.")
        if options["json"]:
            lines.append(json.dumps(outcome.as_json()))
        return "\n".join(lines)
