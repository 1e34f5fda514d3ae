"""Forms validate and convert what a browser sends; the services do the saving."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.core.files.uploadedfile import UploadedFile

from .engine.images import ACCEPTED_CONTENT_TYPES, ACCEPTED_EXTENSIONS


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleImagesField(forms.Field):
    """A list of uploaded files. Each is judged on its own by the upload service, so one
    bad file does not cost the others their results."""

    widget = MultipleFileInput

    def to_python(self, data: Any) -> list[UploadedFile]:
        files = data if isinstance(data, (list, tuple)) else [data]
        return [file for file in files if file]

    def validate(self, value: list[UploadedFile]) -> None:
        if self.required and not value:
            raise forms.ValidationError("Choose at least one image.", code="required")


class UploadForm(forms.Form):
    # No `required` attribute: with JavaScript, dropped files never reach the input.
    use_required_attribute = False

    images = MultipleImagesField(
        label="Images",
        widget=MultipleFileInput(
            attrs={"accept": ",".join(ACCEPTED_CONTENT_TYPES + ACCEPTED_EXTENSIONS)}
        ),
    )


class HistorySearchForm(forms.Form):
    q = forms.CharField(label="Search by label", required=False, max_length=200, strip=True)


class SignupForm(UserCreationForm):
    """Username and password; saving is left to the view's service call."""
