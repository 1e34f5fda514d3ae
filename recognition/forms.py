"""Forms validate and convert what a browser sends; the services do the saving."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.core.files.uploadedfile import UploadedFile

from .engine.images import ACCEPTED_CONTENT_TYPES, ACCEPTED_EXTENSIONS
from .uncertainty import uncertain_filter


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
            attrs={
                "accept": ",".join(ACCEPTED_CONTENT_TYPES + ACCEPTED_EXTENSIONS),
                "aria-describedby": "upload-hint",
            }
        ),
    )


class ImportForm(forms.Form):
    """What to import: a folder's pictures and some chosen pictures, or one ZIP archive of
    them. Whether each file is a picture the import judges on its own; here only that one
    kind of thing was chosen."""

    use_required_attribute = False  # any input will do, and a drop fills none
    # The page's script says the same before sending anything.
    MIXED_MESSAGE = "Choose either a ZIP archive or pictures, not both: start one import for each."
    NOTHING_MESSAGE = "Choose a folder, some pictures or a ZIP archive to import."

    folder = MultipleImagesField(
        label="A folder",
        required=False,
        widget=MultipleFileInput(
            attrs={"webkitdirectory": True, "aria-describedby": "import-hint"}
        ),
    )
    files = MultipleImagesField(
        label="Pictures",
        required=False,
        widget=MultipleFileInput(attrs={"aria-describedby": "import-hint"}),
    )
    archive = forms.FileField(
        label="A ZIP archive",
        required=False,
        allow_empty_file=True,  # the import says what is wrong with it
        widget=forms.FileInput(
            attrs={"accept": ".zip,application/zip", "aria-describedby": "import-hint"}
        ),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        pictures = cleaned.get("folder") or cleaned.get("files")
        if pictures and cleaned.get("archive"):
            raise forms.ValidationError(self.MIXED_MESSAGE, code="archive_with_files")
        if not pictures and not cleaned.get("archive"):
            raise forms.ValidationError(self.NOTHING_MESSAGE, code="required")
        return cleaned

    def chosen(self) -> dict[str, Any]:
        """import_start's keywords: every chosen picture (the folder's first, in the order
        the browser sent them), or the archive."""
        if self.cleaned_data["archive"]:
            return {"archive": self.cleaned_data["archive"]}
        return {"files": [*self.cleaned_data["folder"], *self.cleaned_data["files"]]}


class HistorySearchForm(forms.Form):
    """History filters; every one is optional, and an invalid one is left out."""

    q = forms.CharField(
        label="Label",
        required=False,
        max_length=200,
        strip=True,
        # The datalist of the active model's category names, rendered on the history page.
        widget=forms.SearchInput(
            attrs={
                "list": "label-suggestions",
                "placeholder": "e.g. retriever",
                "autocomplete": "off",
            }
        ),
    )
    uploaded_from = forms.DateField(
        label="Uploaded from",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    uploaded_until = forms.DateField(
        label="Uploaded until",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    min_confidence = forms.IntegerField(
        label="Min. confidence (%)",
        required=False,
        min_value=0,
        max_value=100,
        widget=forms.NumberInput(attrs={"step": 1, "inputmode": "numeric"}),
    )
    uncertain = forms.ChoiceField(
        label="Certainty",
        required=False,
        choices=[("", "All"), ("true", "Only uncertain"), ("false", "Only confident")],
        error_messages={"invalid_choice": "Must be true or false, not “%(value)s”."},
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        start, end = cleaned.get("uploaded_from"), cleaned.get("uploaded_until")
        if start and end and start > end:
            self.add_error("uploaded_until", "The end date is before the start date.")
        return cleaned

    def filters(self) -> dict[str, Any]:
        """Keyword arguments for upload_list_for_user, from the valid fields only."""
        data = self.cleaned_data if hasattr(self, "cleaned_data") else {}
        min_confidence = data.get("min_confidence")
        return {
            "label": data.get("q") or "",
            "uploaded_from": data.get("uploaded_from"),
            "uploaded_until": data.get("uploaded_until"),
            "min_score": None if min_confidence is None else min_confidence / 100,
            "uncertain": uncertain_filter(data.get("uncertain")),
        }


class SignupForm(UserCreationForm):
    """Username and password; saving is left to the view's service call."""


class CorrectionForm(forms.Form):
    """The detail page's "this is actually …": a category name from the type-ahead list,
    or the owner's own words when they say none of the categories fits. The correction
    rules (recognition/corrections.py) judge the label; here it is only carried."""

    label = forms.CharField(
        label="This is actually",
        required=False,
        strip=False,
        widget=forms.TextInput(
            attrs={"list": "label-suggestions", "autocomplete": "off", "maxlength": 200}
        ),
    )
    none_of_these = forms.BooleanField(
        label="None of these categories: use my own words", required=False
    )
