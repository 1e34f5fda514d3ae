from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from recognition.engine.artifact import ArtifactError
from recognition.engine.prepare import prepare
from recognition.engine.specs import DEFAULT_MODEL, OFFLINE_FALLBACK, SPECS
from recognition.engine.weights import WeightsError


class Command(BaseCommand):
    requires_system_checks = []  # an engine command: it needs no database or URLs
    help = (
        "Obtain and verify model weights, compile them to a checked TorchScript artifact "
        "and make it the active model."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", choices=sorted(SPECS), help=f"default: {DEFAULT_MODEL}")
        parser.add_argument("--weights", type=Path, help="a local weights file (air-gapped installs)")
        parser.add_argument(
            "--custom", action="store_true", help="serve your own fine-tuned ResNet-18 weights"
        )
        parser.add_argument("--labels", type=Path, help="with --custom: one class name per line")
        parser.add_argument(
            "--fallback",
            action="store_true",
            help=f"when the weights cannot be downloaded, prepare {OFFLINE_FALLBACK} instead",
        )

    def handle(self, *args, **options):
        try:
            outcome = prepare(
                settings.RECOGNITION_MODELS_DIR,
                model=options["model"],
                weights_file=options["weights"],
                custom=options["custom"],
                labels_file=options["labels"],
                fallback=options["fallback"],
                progress=options["verbosity"] > 0,
                log=self.stderr.write,
            )
        except (WeightsError, ArtifactError) as exc:
            raise CommandError(str(exc)) from None
        if outcome.fell_back_from:
            self.stdout.write(
                f"{outcome.fell_back_from} could not be prepared; "
                f"serving the offline model {outcome.manifest.name} instead."
            )
        return outcome.summary()
