"""Fine-tuning a model's classification head on penultimate features: the backbone stays
as it is, only the last linear layer is trained, so it takes seconds on a CPU.

The head starts as the base model's own, with one row appended per new category (see
extended_head). Training is full-batch Adam on the rows of the classes in the training
set only, with a pull towards the starting head and each class weighted equally; it
has no randomness, so the same training set gives the same weights, hence the same
model version.

How good it is, is measured by k-fold cross-validation: every picture is predicted by
a head trained without it. "Corrected" pictures are the ones people labelled; "anchors"
are pictures the base model was sure of, labelled with its own answer, which keep the
known categories from being forgotten. The base head needs no folds: it never saw them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from PIL import Image
from torch import nn

from .preprocess import Preprocessor
from .specs import ModelSpec
from .weights import load_state_dict

STEPS = 60
LEARNING_RATE = 0.05
# Strength of the pull back towards the starting head (per weight, squared distance).
ANCHORING = 0.1
MAX_FOLDS = 5
BATCH = 16


@dataclass(frozen=True)
class Head:
    weight: torch.Tensor  # classes × features
    bias: torch.Tensor  # classes


@dataclass(frozen=True)
class Evaluation:
    folds: int
    cv_accuracy_before: float  # corrected pictures, the base head
    cv_accuracy_after: float  # corrected pictures, heads trained without them
    known_accuracy_before: float | None  # anchors; None without any
    known_accuracy_after: float | None


def load_base(spec: ModelSpec, weights_path, num_classes: int) -> nn.Module:
    """The base model's eager network with its weights, in eval mode."""
    module = spec.build(num_classes)
    module.load_state_dict(load_state_dict(weights_path), strict=True)
    return module.eval()


def head_of(module: nn.Module, spec: ModelSpec) -> Head:
    linear = getattr(module, spec.head)
    return Head(linear.weight.detach().clone(), linear.bias.detach().clone())


def extract_features(
    module: nn.Module,
    spec: ModelSpec,
    preprocessor: Preprocessor,
    images: Iterable[Image.Image],
    *,
    progress: Callable[[int], bool] = lambda done: True,
) -> torch.Tensor:
    """The penultimate features (what the head sees) of each picture, preprocessed as
    for serving. `progress(n)` is told how many are done after each batch; when it
    returns False, extraction stops there (a cancelled job) and returns what it has."""
    head = getattr(module, spec.head)
    setattr(module, spec.head, nn.Identity())
    rows: list[torch.Tensor] = []
    done = 0
    try:
        batch: list[Image.Image] = []
        with torch.inference_mode():
            for image in images:
                batch.append(image)
                if len(batch) == BATCH:
                    rows.append(module(preprocessor.batch(batch)))
                    done, batch = done + len(batch), []
                    if not progress(done):
                        return torch.cat(rows)
            if batch:
                rows.append(module(preprocessor.batch(batch)))
                progress(done + len(batch))
    finally:
        setattr(module, spec.head, head)
    return torch.cat(rows) if rows else torch.empty(0, head.in_features)


def extended_head(base: Head, features: torch.Tensor, labels: torch.Tensor, num_new: int) -> Head:
    """The base head with a row per new category (class indices after the base's): the
    direction from the mean of all pictures to the mean of its own, as long as an
    average base row, its bias set so that its pictures score it as high, on average,
    as the base head's best answer for them. Other pictures start below that."""
    known = base.weight.shape[0]
    scale = base.weight.norm(dim=1).mean()
    best = (features @ base.weight.T + base.bias).max(dim=1).values
    centre = features.mean(dim=0)
    rows, biases = [], []
    for new in range(num_new):
        mine = labels == known + new
        mean = features[mine].mean(dim=0) if bool(mine.any()) else centre
        direction = mean - centre
        row = direction / direction.norm().clamp_min(1e-8) * scale
        target = best[mine].mean() if bool(mine.any()) else best.mean()
        rows.append(row)
        biases.append(target - row @ mean)
    weight = torch.cat([base.weight, torch.stack(rows)]) if rows else base.weight
    bias = torch.cat([base.bias, torch.stack(biases)]) if biases else base.bias
    return Head(weight.clone(), bias.clone())


def train_head(start: Head, features: torch.Tensor, labels: torch.Tensor, known: int) -> Head:
    """Cross-entropy over every category, each class present weighted alike. Only the
    rows of the classes in the training set move (pulled towards `start`); the others
    keep their logits, precomputed once, which makes a step cheap. Deterministic."""
    present = torch.unique(labels)
    # Only known categories are held to where they were; a new one's start is a guess.
    held = (present < known)[:, None].float()
    fixed = (features @ start.weight.T + start.bias).detach()
    rows = start.weight[present].clone()
    delta_weight = torch.zeros_like(rows, requires_grad=True)
    delta_bias = torch.zeros(len(present), requires_grad=True)
    counts = torch.bincount(labels, minlength=start.weight.shape[0]).float()
    sample_weight = 1.0 / counts[labels]
    sample_weight = sample_weight / sample_weight.sum()
    optimiser = torch.optim.Adam([delta_weight, delta_bias], lr=LEARNING_RATE)
    with torch.inference_mode(False), torch.enable_grad():
        for _ in range(STEPS):
            optimiser.zero_grad()
            logits = fixed.index_add(1, present, features @ delta_weight.T + delta_bias)
            loss = (nn.functional.cross_entropy(logits, labels, reduction="none") * sample_weight).sum()
            loss = loss + ANCHORING * (held * delta_weight**2).sum()
            loss.backward()
            optimiser.step()
    weight, bias = start.weight.clone(), start.bias.clone()
    weight[present] += delta_weight.detach()
    bias[present] += delta_bias.detach()
    return Head(weight, bias)


def predict(head: Head, features: torch.Tensor) -> torch.Tensor:
    return (features @ head.weight.T + head.bias).argmax(dim=1)


def fold_of(labels: list[int]) -> tuple[int, list[int]]:
    """(k, the fold of each picture): k is the size of the smallest class, between 2
    and MAX_FOLDS; each class's pictures are dealt to the folds in turn, so every fold
    holds out some of each class that has at least k pictures."""
    counts: dict[int, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    k = max(2, min(MAX_FOLDS, min(counts.values())))
    seen: dict[int, int] = {}
    folds = []
    for label in labels:
        folds.append(seen.get(label, 0) % k)
        seen[label] = seen.get(label, 0) + 1
    return k, folds


def evaluate(
    base: Head,
    features: torch.Tensor,
    labels: torch.Tensor,
    corrected: torch.Tensor,
    num_new: int,
) -> Evaluation:
    """k-fold accuracy before (the base head, which cannot name a new category) and
    after, on the corrected pictures and on the anchors. `corrected` is a bool mask;
    anchors are dealt to the same folds, so they too are predicted by heads that did
    not see them. Needs at least two corrected pictures."""
    # The base head's outputs are the known categories only: a new one is always wrong.
    before = predict(base, features)
    k, corrected_folds = fold_of(labels[corrected].tolist())
    folds = torch.empty(len(labels), dtype=torch.long)
    folds[corrected] = torch.tensor(corrected_folds, dtype=torch.long)
    anchors = ~corrected
    folds[anchors] = torch.arange(int(anchors.sum())) % k
    after = torch.empty_like(labels)
    for fold in range(k):
        held_out = folds == fold
        train = ~held_out
        start = extended_head(base, features[train], labels[train], num_new)
        trained = train_head(start, features[train], labels[train], base.weight.shape[0])
        after[held_out] = predict(trained, features[held_out])

    def accuracy(predicted: torch.Tensor, mask: torch.Tensor) -> float | None:
        if not bool(mask.any()):
            return None
        return float((predicted[mask] == labels[mask]).float().mean())

    return Evaluation(
        folds=k,
        cv_accuracy_before=accuracy(before, corrected),
        cv_accuracy_after=accuracy(after, corrected),
        known_accuracy_before=accuracy(before, anchors),
        known_accuracy_after=accuracy(after, anchors),
    )


def fine_tuned_state(module: nn.Module, spec: ModelSpec, head: Head) -> dict[str, torch.Tensor]:
    """The base network's state dict with this head in place of its own: the weights of
    a model with head.weight.shape[0] categories, for the prepare pipeline."""
    state = {name: value.clone() for name, value in module.state_dict().items()}
    state[f"{spec.head}.weight"] = head.weight.clone().contiguous()
    state[f"{spec.head}.bias"] = head.bias.clone().contiguous()
    return state
