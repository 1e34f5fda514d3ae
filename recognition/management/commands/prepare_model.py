from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection

from recognition import active_model, published_models
from recognition.engine import model_store, quantize
from recognition.engine.manifest import ArtifactError, Manifest
from recognition.engine.prepare import PrepareOutcome, prepare
from recognition.engine.specs import DEFAULT_MODEL, OFFLINE_FALLBACK, SPECS
from recognition.engine.weights import WeightsError
from recognition.storage import StorageError

# Options that say which fp32 model to prepare; --int8 without them quantizes the active one.
_CHOOSES_A_MODEL = ("model", "weights", "custom", "labels", "fallback")


class Command(BaseCommand):
    # It runs where no database is migrated yet too (an image build): activating is then
    # left for later, and said so.
    requires_system_checks = []
    help = (
        "Obtain and verify model weights, compile them to a checked TorchScript artifact, "
        "publish it to the object store when one is configured, and make it the active "
        "model of every node. With --int8, also write an int8 version of it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", choices=sorted(SPECS), help=f"default: {DEFAULT_MODEL}")
        parser.add_argument("--weights", type=Path, help="a local weights file (air-gapped installs)")
        parser.add_argument(
            "--custom",
            action="store_true",
            help="serve your own fine-tuned weights (a ResNet-18 unless --model names another)",
        )
        parser.add_argument("--labels", type=Path, help="with --custom: one class name per line")
        parser.add_argument(
            "--fallback",
            action="store_true",
            help=f"when the weights cannot be downloaded, prepare {OFFLINE_FALLBACK} instead",
        )
        parser.add_argument(
            "--int8",
            action="store_true",
            help="also write an int8 ONNX version (<key>-int8) of the model prepared, or of the "
            "active model when no model is named; serve it with RECOGNITION_MODEL=<key>-int8",
        )
        parser.add_argument(
            "--activate",
            action="store_true",
            help="with --int8: make the int8 version the active model, if its top-1 agreement "
            f"with fp32 is at least {quantize.DEFAULT_AGREEMENT:.0%}",
        )

    def handle(self, *args, **options):
        if options["activate"] and not options["int8"]:
            raise CommandError(
                "--activate only goes with --int8: the fp32 model prepared is made active anyway."
            )
        models_dir = Path(settings.RECOGNITION_MODELS_DIR)
        try:
            if options["int8"] and not any(options[name] for name in _CHOOSES_A_MODEL):
                fp32 = _active_fp32(models_dir)
            else:
                outcome = self._prepare(models_dir, options)
                fp32 = outcome.manifest
                # A build made just now is what the operator asked for; one that was
                # there already (`make run` again, a deployment's setup step) must not
                # undo a model someone chose since with activate_model or the admin.
                self._activate(fp32, keep_another_active=not outcome.built)
            return self._int8(models_dir, fp32, options["activate"]) if options["int8"] else ""
        except (WeightsError, ArtifactError, active_model.ActivationRefused) as exc:
            raise CommandError(str(exc)) from None

    def _publish(self, manifest: Manifest) -> None:
        if not settings.RECOGNITION_S3_BUCKET:
            return  # one machine: its models directory is where every process looks
        try:
            published_models.publish(manifest)
        except StorageError as exc:
            raise CommandError(
                f"{manifest.key} is prepared in {manifest.directory} but could not be "
                f"published to the object store ({exc}), so it was not activated: other "
                "nodes could not fetch it. Check the AWS_* variables and "
                "RECOGNITION_S3_BUCKET, then run the command again."
            ) from None
        self.stdout.write(
            f"Published {manifest.key} to the object store under "
            f"{published_models.object_name(manifest.key, '')}."
        )

    def _activate(self, manifest: Manifest, *, keep_another_active: bool = False) -> None:
        """Publish, then record the activation row: nodes switch to it by themselves."""
        self._publish(manifest)
        try:
            if not _database_exists():
                raise DatabaseError("there is no database yet")
            before = active_model.current_key()
            if keep_another_active and before not in (None, manifest.key):
                self.stdout.write(
                    f"The active model stays {before}; "
                    f"`python manage.py activate_model {manifest.key}` switches to this one."
                )
                return
            active_model.activate(manifest.key)
        except DatabaseError as exc:
            self.stdout.write(
                f"Not recorded as the active model: the database is not ready ({exc}). "
                "Until a model is activated the only model prepared here is served; after "
                f"`python manage.py migrate`, run `python manage.py activate_model {manifest.key}`."
            )
            return
        if before == manifest.key:
            self.stdout.write(f"{manifest.key} is the active model; nothing to do.")
        else:
            self.stdout.write(f"{manifest.key} is now the active model.")

    def _prepare(self, models_dir: Path, options) -> PrepareOutcome:
        outcome = prepare(
            models_dir,
            model=options["model"],
            weights_file=options["weights"],
            custom=options["custom"],
            labels_file=options["labels"],
            fallback=options["fallback"],
            progress=options["verbosity"] > 0,
            log=self.stderr.write,
        )
        if outcome.fell_back_from:
            self.stdout.write(
                f"{outcome.fell_back_from} could not be prepared; "
                f"serving the offline model {outcome.manifest.name} instead."
            )
        # Said before any quantizing, which may still fail.
        self.stdout.write(outcome.summary())
        return outcome

    def _int8(self, models_dir: Path, fp32: Manifest, activate: bool) -> str:
        int8 = quantize.find_int8(models_dir, fp32)
        if int8 is None:
            self.stderr.write(f"Quantizing {fp32.key} to int8 ({quantize.SCHEME}) ...")
            int8 = quantize.quantize(models_dir, fp32)
            what = f"Prepared the int8 version {int8.key} in {int8.directory}"
        else:
            what = f"The int8 version {int8.key} is already prepared"
        report = (
            f"{what}: it gives the fp32 model's top label for {int8.top1_agreement:.1%} of "
            f"{quantize.CHECK_PICTURES} check pictures (largest logit difference "
            f"{int8.onnx_max_abs_diff:.2f})."
        )
        if activate:
            quantize.check_may_be_active(int8)
            self._activate(int8)
            return report
        self._publish(int8)
        if not quantize.may_be_default(int8):
            report += (
                f" Below {quantize.DEFAULT_AGREEMENT:.0%}, it cannot become the active model."
            )
        return (
            f"{report} Serve it with RECOGNITION_MODEL={int8.key}; "
            f"the active model is still {_active_key_or_none()}."
        )


def _database_exists() -> bool:
    """False for an SQLite file not created yet (an image build): connecting would create
    it, owned by whoever builds, before any migration."""
    database = connection.settings_dict
    if database["ENGINE"].endswith("sqlite3"):
        name = str(database["NAME"])
        return name == ":memory:" or "mode=memory" in name or Path(name).exists()
    return True


def _active_key_or_none() -> str | None:
    try:
        return active_model.current_key() if _database_exists() else None
    except DatabaseError:
        return None


def _active_fp32(models_dir: Path) -> Manifest:
    """The active model (the only one prepared here when none is recorded), or the fp32
    model it was quantized from."""
    active = model_store.resolve(models_dir, _active_key_or_none())
    if active.quantized_from:
        return Manifest.read(models_dir / active.quantized_from)
    return active
