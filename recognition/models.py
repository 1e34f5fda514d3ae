"""What the service remembers: each distinct image once, its classifications per model
version, and who uploaded it.

An image belongs to nobody: it is keyed by its SHA-256 and shared by every Upload of the
same bytes. Everything a user sees about "their" picture comes from their Upload.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Length, Lower
from django.db.models.lookups import Exact

from .uncertainty import is_uncertain

MAX_STORED_PREDICTIONS = 10
MAX_FILENAME_LENGTH = 255


class ThumbnailState(models.TextChoices):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


class StoredImage(models.Model):
    sha256 = models.CharField("SHA-256", max_length=64, unique=True)
    # Its name in the file storage (under MEDIA_ROOT, or in the bucket), derived from the
    # hash, never from the user's filename.
    path = models.CharField(max_length=100, unique=True)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    format = models.CharField(max_length=10)
    byte_size = models.PositiveBigIntegerField("bytes")
    created_at = models.DateTimeField(auto_now_add=True)
    # The thumbnail is made by a background task after the upload commits. These fields
    # are the truth about that work, whatever the broker did with its message: a pending
    # thumbnail whose claim is older than the stale limit is queued again (tasks.py).
    thumbnail_state = models.CharField(
        max_length=10, choices=ThumbnailState.choices, default=ThumbnailState.PENDING
    )
    # When a worker took the task, renewed while it works; None while nobody has it.
    thumbnail_claimed_at = models.DateTimeField(null=True, blank=True)
    thumbnail_attempts = models.PositiveSmallIntegerField(default=0)
    # When the sweep last sent its task again; None: only the upload's message was sent.
    # A backlog (say behind a long import) is sent again once per stale limit, not at
    # every sweep, so the queue does not fill with copies of the same work.
    thumbnail_queued_at = models.DateTimeField(null=True, blank=True)
    # Why the original could not be made into a thumbnail (state "failed").
    thumbnail_error = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["thumbnail_state", "thumbnail_claimed_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Exact(Length("sha256"), 64) & Exact(F("sha256"), Lower("sha256")),
                name="stored_image_sha256_is_64_lowercase_chars",
            ),
            models.CheckConstraint(
                condition=Q(width__gt=0, height__gt=0), name="stored_image_has_pixels"
            ),
            models.CheckConstraint(condition=Q(byte_size__gt=0), name="stored_image_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.sha256[:12]} ({self.format} {self.width}×{self.height})"


class Classification(models.Model):
    stored_image = models.ForeignKey(
        StoredImage, on_delete=models.CASCADE, related_name="classifications"
    )
    model_name = models.CharField(max_length=100)
    model_version = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    inference_ms = models.FloatField()
    # Whether the model ran custom (fine-tuned) weights, as its manifest said when it
    # classified; None for classifications recorded before this was kept.
    custom_weights = models.BooleanField(null=True)
    # Copies of the rank-1 prediction, so lists sort and show without a join.
    top_label = models.CharField(max_length=200)
    top_score = models.FloatField()
    # Top-1 minus top-2 probability, from the full softmax (the top-1 score when the model
    # has one category). Stored rather than derived from the ranked predictions so
    # filtering by uncertainty is one indexed comparison per row; whether a row counts
    # as uncertain is decided at read time (recognition/uncertainty.py), so changing the
    # thresholds never rewrites rows.
    margin = models.FloatField()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["stored_image", "model_name", "model_version"],
                name="one_classification_per_image_and_model_version",
            ),
            models.CheckConstraint(
                condition=Q(inference_ms__gte=0), name="classification_inference_ms_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(top_score__gte=0, top_score__lte=1),
                name="classification_top_score_is_a_probability",
            ),
            models.CheckConstraint(
                condition=Q(margin__gte=0, margin__lte=1),
                name="classification_margin_is_a_probability",
            ),
        ]
        indexes = [models.Index(fields=["top_label"])]

    def __str__(self) -> str:
        return f"{self.top_label} ({self.top_score:.0%}, {self.model_name} {self.model_version})"

    @property
    def uncertain(self) -> bool:
        return is_uncertain(self.top_score, self.margin)

    @property
    def model_key(self) -> str:
        """The prepared build that made it, as model keys are written everywhere."""
        return f"{self.model_name}-{self.model_version}"


class Prediction(models.Model):
    classification = models.ForeignKey(
        Classification, on_delete=models.CASCADE, related_name="predictions"
    )
    rank = models.PositiveSmallIntegerField()
    label = models.CharField(max_length=200)
    index = models.PositiveIntegerField(help_text="The category's position in the model output.")
    score = models.FloatField()

    class Meta:
        ordering = ["classification", "rank"]
        constraints = [
            models.UniqueConstraint(
                fields=["classification", "rank"], name="one_prediction_per_rank"
            ),
            models.CheckConstraint(
                condition=Q(rank__gte=1, rank__lte=MAX_STORED_PREDICTIONS),
                name="prediction_rank_in_range",
            ),
            models.CheckConstraint(
                condition=Q(score__gte=0, score__lte=1), name="prediction_score_is_a_probability"
            ),
        ]
        indexes = [models.Index(fields=["label"])]

    def __str__(self) -> str:
        return f"{self.rank}. {self.label} ({self.score:.1%})"


class Upload(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads"
    )
    stored_image = models.ForeignKey(StoredImage, on_delete=models.PROTECT, related_name="uploads")
    # The classification this user was shown: the active model's at their last upload.
    classification = models.ForeignKey(
        Classification, on_delete=models.PROTECT, related_name="uploads"
    )
    original_filename = models.CharField(max_length=MAX_FILENAME_LENGTH)
    created_at = models.DateTimeField()
    last_uploaded_at = models.DateTimeField()

    class Meta:
        ordering = ["-last_uploaded_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "stored_image"], name="one_upload_per_user_and_image"
            ),
            models.CheckConstraint(
                condition=Q(last_uploaded_at__gte=F("created_at")),
                name="upload_last_uploaded_not_before_created",
            ),
        ]
        indexes = [models.Index(fields=["user", "-last_uploaded_at"])]

    def __str__(self) -> str:
        return f"{self.original_filename} by {self.user}"


class ActiveModel(models.Model):
    """Which prepared model every web node and worker serves: one row per activation, and
    the newest row is the active model. Older rows are the history a rollback goes back to.
    """

    key = models.CharField(max_length=100, help_text="A prepared build, e.g. resnet18-1a2b3c4d5e6f.")
    previous_key = models.CharField(
        max_length=100, blank=True, help_text="What was active before: the rollback target."
    )
    activated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty when a command or a deployment activated it.",
    )
    activated_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-activated_at", "-id"]
        get_latest_by = ["activated_at", "id"]

    def __str__(self) -> str:
        return f"{self.key} (since {self.activated_at:%Y-%m-%d %H:%M})"


class JobKind(models.TextChoices):
    IMPORT = "import"
    RECLASSIFY = "reclassify"
    FINETUNE = "finetune"


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_JOB_STATUSES = (JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED)


class Job(models.Model):
    """One piece of long background work (recognition/jobs.py runs it): what it is, whose
    it is, how far it got. The worker writes the counts as it goes, so any web node can
    show progress, and a worker that takes over after a crash reads what is left here."""

    kind = models.CharField(max_length=20, choices=JobKind.choices)
    # None when a command started it (reclassify from manage.py).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
        related_name="jobs",
    )
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0, help_text="Items finished successfully.")
    failed = models.PositiveIntegerField(default=0, help_text="Items refused or failed.")
    created_at = models.DateTimeField(db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The prepared model the job classified with (a key such as resnet18-1a2b3c4d5e6f).
    model_key = models.CharField(max_length=100, blank=True)
    error = models.CharField(max_length=200, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # Renewed by the worker running it; a claim that stops being renewed means the
    # worker died, and the sweep queues the job again (it resumes where it stopped).
    claimed_at = models.DateTimeField(null=True, blank=True)
    # When a message to run it was last sent, so the sweep does not send one every tick.
    queued_at = models.DateTimeField(null=True, blank=True)
    # Kind-specific: top_k and the staged archive for imports; the model and
    # only_missing for reclassification.
    options = models.JSONField(default=dict, blank=True)
    # Reclassification's resume point: every stored image up to this id is done.
    cursor = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "kind", "status"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(done__lte=F("total")) & Q(failed__lte=F("total")),
                name="job_counts_within_total",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"

    @property
    def processed(self) -> int:
        return self.done + self.failed

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_JOB_STATUSES


class JobItemStatus(models.TextChoices):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobItem(models.Model):
    """One file of an import, and what became of it."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField()
    filename = models.CharField(max_length=MAX_FILENAME_LENGTH)
    # Where its bytes are: a staged file's storage name, or the member's name inside the
    # job's staged archive.
    source = models.CharField(max_length=1024, blank=True)
    status = models.CharField(
        max_length=10, choices=JobItemStatus.choices, default=JobItemStatus.PENDING
    )
    upload = models.ForeignKey(
        Upload, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    error_code = models.CharField(max_length=40, blank=True)
    error_message = models.CharField(max_length=300, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "position"]
        constraints = [
            models.UniqueConstraint(fields=["job", "position"], name="one_job_item_per_position"),
        ]
        indexes = [models.Index(fields=["job", "status", "position"])]

    def __str__(self) -> str:
        return f"{self.filename} ({self.status})"


class CorrectionStatus(models.TextChoices):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class Correction(models.Model):
    """An owner's word on what their picture really shows (recognition/corrections.py
    writes it): one of the model's categories or a label of their own. One per upload;
    saying something else replaces it and sends it back for review."""

    upload = models.OneToOneField(Upload, on_delete=models.CASCADE, related_name="correction")
    # Who said it: the upload's owner, or the reviewer who gave an uncertain result its
    # label in the review queue; kept on the row so the record stands on its own.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="corrections"
    )
    # The answer it corrects: what the owner was shown when they said it. Statistics
    # and learning compare the two, whatever model classifies the picture later.
    classification = models.ForeignKey(
        Classification, on_delete=models.CASCADE, related_name="corrections"
    )
    label = models.CharField(max_length=100)
    # The category's position in the output of `model_key`; None for a label of the
    # owner's own words ("none of these").
    index = models.PositiveIntegerField(null=True, blank=True)
    model_key = models.CharField(
        max_length=100, help_text="The prepared model whose categories `index` counts."
    )
    status = models.CharField(
        max_length=10, choices=CorrectionStatus.choices, default=CorrectionStatus.PENDING
    )
    created_at = models.DateTimeField()
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "created_at"]), models.Index(fields=["label"])]
        # Given through the "Reviewers" group (signals.ensure_reviewers_group): the queue and its
        # statistics, the only place anyone sees another user's pictures.
        permissions = [("review_corrections", "Can review corrections and uncertain results")]
        constraints = [
            models.CheckConstraint(
                condition=~Q(label=""), name="correction_label_not_empty"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.status})"


class ReviewDecision(models.TextChoices):
    # The proposed label is right: the owner's correction, or for an uncertain result
    # without one, the model's own answer.
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    # The reviewer gave the right label instead.
    EDITED = "edited"


class Review(models.Model):
    """One reviewer's decision in the review queue, kept for good: a correction or an
    uncertain result judged, by whom and when (recognition/review.py writes it)."""

    upload = models.ForeignKey(Upload, on_delete=models.CASCADE, related_name="reviews")
    # The result that was judged: what the model had said.
    classification = models.ForeignKey(
        Classification, on_delete=models.CASCADE, related_name="reviews"
    )
    # The correction judged; None for an uncertain result that had none.
    correction = models.ForeignKey(
        Correction, null=True, blank=True, on_delete=models.SET_NULL, related_name="reviews"
    )
    # What was judged, as it read then: the correction's label or the model's top label.
    proposed_label = models.CharField(max_length=200)
    decision = models.CharField(max_length=10, choices=ReviewDecision.choices)
    # The label the decision settled on: the proposed one when accepted, the reviewer's
    # when edited, empty when rejected.
    label = models.CharField(max_length=200, blank=True)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="reviews"
    )
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["classification", "decision"])]

    def __str__(self) -> str:
        return f"{self.proposed_label}: {self.decision}"
