"""How two model versions differ on the same pictures: over the stored images both
classified, how often they agree on the top label, which labels changed into which, and
how often each old label flipped. Computed in the database (one grouped query), so it
costs the same for a thousand images as for a hundred thousand in memory.

Versions are named by their keys (resnet18-1a2b3c4d5e6f), as everywhere else, and found
in the classifications themselves: a build deleted since still compares.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Count, OuterRef, Subquery

from . import active_model
from .errors import ServiceError
from .models import Classification

MOST_FREQUENT_CHANGES = 20


class ComparisonRefused(ServiceError):
    code = "invalid_comparison"


class UnknownModelVersion(ServiceError):
    status = 404
    code = "unknown_model_version"


class NothingToCompare(ServiceError):
    status = 404
    code = "nothing_to_compare"


@dataclass(frozen=True)
class LabelChange:
    old_label: str
    new_label: str
    count: int


@dataclass(frozen=True)
class LabelFlips:
    label: str  # the old model's top label
    changed: int  # of its images, how many the new model labels otherwise
    total: int

    @property
    def share(self) -> float:
        return self.changed / self.total


@dataclass(frozen=True)
class Comparison:
    from_key: str
    to_key: str
    count: int  # images classified by both
    agreeing: int  # of them, with the same top label
    changes: list[LabelChange]  # the most frequent, most frequent first
    flips: list[LabelFlips]  # every old label, most flipped first

    @property
    def agreement(self) -> float:
        return self.agreeing / self.count


@dataclass(frozen=True)
class _Version:
    key: str
    name: str
    version: str


def model_versions() -> list[str]:
    """The keys of every model version that classified at least one image."""
    pairs = Classification.objects.order_by().values_list("model_name", "model_version").distinct()
    return sorted(f"{name}-{version}" for name, version in pairs)


def default_pair() -> tuple[str | None, str | None]:
    """What a comparison looks at unless told: the model active before, and the active one."""
    row = active_model.current()
    if row is None:
        return None, None
    return row.previous_key or None, row.key


def compare(from_key: str, to_key: str) -> Comparison:
    """`from_key` (the old version) against `to_key` (the new one). Raises
    ComparisonRefused (the same version twice), UnknownModelVersion (no image was
    classified by one of them) or NothingToCompare (no image was classified by both)."""
    if from_key == to_key:
        raise ComparisonRefused(f"Name two different model versions; both are {from_key!r}.")
    old, new = _version(from_key), _version(to_key)
    new_label = Classification.objects.filter(
        stored_image=OuterRef("stored_image"), model_name=new.name, model_version=new.version
    ).values("top_label")[:1]
    pairs = (
        Classification.objects.filter(model_name=old.name, model_version=old.version)
        .annotate(new_label=Subquery(new_label))
        .filter(new_label__isnull=False)
        .order_by()  # the default ordering would split the groups
        .values_list("top_label", "new_label")
        .annotate(images=Count("pk"))
    )
    changes: list[LabelChange] = []
    per_label: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # changed, total
    count = agreeing = 0
    for old_label, label, images in pairs:
        count += images
        per_label[old_label][1] += images
        if old_label == label:
            agreeing += images
        else:
            per_label[old_label][0] += images
            changes.append(LabelChange(old_label, label, images))
    if not count:
        raise NothingToCompare(
            f"No stored image was classified by both {from_key} and {to_key}. Reclassify "
            f"them first: `python manage.py reclassify --model {to_key}`."
        )
    changes.sort(key=lambda c: (-c.count, c.old_label, c.new_label))
    flips = [LabelFlips(label, changed, total) for label, (changed, total) in per_label.items()]
    flips.sort(key=lambda f: (-f.changed, -f.total, f.label))
    return Comparison(
        from_key, to_key, count, agreeing, changes[:MOST_FREQUENT_CHANGES], flips
    )


def _version(key: str) -> _Version:
    # A key is <name>-<version>, and names may hold dashes too: try each split.
    for position in [i for i, char in enumerate(key) if char == "-"]:
        name, version = key[:position], key[position + 1 :]
        if Classification.objects.filter(model_name=name, model_version=version).exists():
            return _Version(key, name, version)
    known = model_versions()
    listed = ", ".join(known) if known else "none yet"
    raise UnknownModelVersion(
        f"No image was classified by {key!r}. Model versions with classifications: {listed}."
    )
