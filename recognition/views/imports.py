"""The Import page: start a bulk import (a folder, many pictures or a ZIP archive), follow
one as it runs, cancel it. The work and its rules are in imports.py and jobs.py; the progress the
page shows is the same the API's import resource gives its script (import.js)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST, require_http_methods

from ..errors import describe_error, log_server_side
from ..forms import ImportForm
from ..imports import ImportTooLarge, import_allowance_remaining, import_rate, import_start
from ..jobs import job_cancel
from ..models import Job, JobKind, JobStatus
from ..selectors import job_get_for_user, job_items, job_list_for_user

# The script asks the API for the same page of items the server rendered.
ITEMS_PAGE_SIZE = 100
IMPORTS_PAGE_SIZE = 20


@login_required
@require_http_methods(["GET", "POST"])
def import_page(request: HttpRequest) -> HttpResponse:
    error, status = "", 200
    if request.method == "POST":
        form = ImportForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                job = import_start(user=request.user, **form.chosen())
            except Exception as exc:
                # Refused whole (allowance, size, a bad archive, storage): nothing was written.
                answer = describe_error(exc)
                if answer is None:
                    raise
                log_server_side(answer, exc, request)
                error, status = answer.message, answer.status
            else:
                return redirect("import-detail", job_id=job.pk)
        else:
            status = 400
    else:
        form = ImportForm()
    imports = job_list_for_user(user=request.user, kind=JobKind.IMPORT)
    context = {
        "form": form,
        "error": error,
        "page": Paginator(imports, IMPORTS_PAGE_SIZE).get_page(request.GET.get("page")),
        "remaining": import_allowance_remaining(request.user),
        "max_import_bytes": settings.RECOGNITION_IMPORT_MAX_ARCHIVE_BYTES,
        # The script checks the choice against the import's cap before sending it.
        "too_large_message": ImportTooLarge(settings.RECOGNITION_IMPORT_MAX_ARCHIVE_BYTES).message,
        "max_upload_bytes": settings.RECOGNITION_MAX_UPLOAD_BYTES,
    }
    return render(request, "recognition/import.html", context, status=status)


@dataclass(frozen=True)
class ImportProgress:
    """What the job page shows of a job's counts; import.js computes the same from the
    API's answer."""

    percent: int
    rate: str
    time_left: str


def import_progress(job: Job) -> ImportProgress:
    rate, seconds_left = import_rate(job)
    # Floored, so 100 % means every file is finished, never "almost".
    percent = 100 * job.processed // job.total if job.total else 100
    return ImportProgress(percent, _rate_text(rate), _time_left_text(seconds_left))


def _rate_text(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.1f} pictures/s"


def _time_left_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds <= 0:  # import_rate's answer once the import has ended
        return "none"
    if seconds < 90:
        return f"about {math.ceil(seconds)} s"
    return f"about {math.ceil(seconds / 60)} min"


# What the job page says of each status (import.js gets them from the page).
STATUS_TEXTS = {
    JobStatus.QUEUED: "Queued: it starts as soon as a worker is free and any earlier "
    "import of yours has finished.",
    JobStatus.RUNNING: "Running.",
    JobStatus.DONE: "Finished.",
    JobStatus.FAILED: "Stopped on an error:",
    JobStatus.CANCELLED: "Cancelled: the files not yet recognised were left out.",
}


@login_required
def import_detail_page(request: HttpRequest, job_id: int) -> HttpResponse:
    job = job_get_for_user(user=request.user, job_id=job_id, kind=JobKind.IMPORT)
    items = Paginator(job_items(job), ITEMS_PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "job": job,
        "progress": import_progress(job),
        "status_text": STATUS_TEXTS[job.status],
        "status_texts": {str(status): text for status, text in STATUS_TEXTS.items()},
        "items": items,
        "items_page_size": ITEMS_PAGE_SIZE,
    }
    return render(request, "recognition/import_detail.html", context)


@login_required
@require_POST
def import_cancel_page(request: HttpRequest, job_id: int) -> HttpResponse:
    job_get_for_user(user=request.user, job_id=job_id, kind=JobKind.IMPORT)
    job_cancel(user=request.user, job_id=job_id)
    return redirect("import-detail", job_id=job_id)
