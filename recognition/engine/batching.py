"""Micro-batching: concurrent requests in one process share one forward pass.

A CPU network runs a batch of 8 images in far less than 8 times the time of one, so
requests that arrive together are grouped. Each caller preprocesses its own images (in
parallel, in its own thread) and waits for its own results; one worker thread runs the
model. A lone request is never held back: the worker waits for company only while other
callers are on their way, and at most `max_wait_ms`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from .backends import DEFAULT_BACKEND
from .service import Classification, Classifier, LoadedModel

logger = logging.getLogger(__name__)

DEFAULT_MAX_BATCH = 8
DEFAULT_MAX_WAIT_MS = 5.0


class ClassifierClosed(RuntimeError):
    pass


@dataclass
class _Request:
    loaded: LoadedModel
    tensors: torch.Tensor  # (n, 3, crop, crop)
    top_k: int
    preprocess_ms: float
    future: Future = field(default_factory=Future)


_STOP = object()


class BatchingClassifier(Classifier):
    """A Classifier whose classify() calls from many threads share forward passes."""

    def __init__(
        self,
        models_dir: Path,
        *,
        model: str | None = None,
        threads: int | None = None,
        backend: str = DEFAULT_BACKEND,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
    ):
        super().__init__(models_dir, model=model, threads=threads, backend=backend)
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait_ms) / 1000
        self._queue: queue.Queue = queue.Queue()
        self._callers = 0  # callers inside classify(): preprocessing or waiting
        self._callers_lock = threading.Lock()
        self._closed = False
        # Taken to enqueue and to close: nothing can slip in behind the stop marker.
        self._submit_lock = threading.Lock()
        self._worker = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
        self._worker.start()

    def classify(self, images: Sequence[Image.Image], top_k: int = 3) -> list[Classification]:
        if not images:
            return []
        with self._callers_lock:
            self._callers += 1
        try:
            loaded = self.current()
            started = time.perf_counter()
            tensors = loaded.preprocessor.batch(images)
            preprocess_ms = (time.perf_counter() - started) * 1000
            request = _Request(loaded, tensors, top_k, preprocess_ms)
            with self._submit_lock:
                if self._closed:
                    raise ClassifierClosed("The classifier is shutting down.")
                self._queue.put(request)
            return request.future.result()
        finally:
            with self._callers_lock:
                self._callers -= 1

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking requests, finish those already queued, stop the worker."""
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._worker.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            batch, stopping = self._collect(item, stopping=False)
            self._serve(batch)
            if stopping:
                break
        # Drain: requests queued before close() still get their answers.
        while (item := self._next_queued()) is not None:
            batch, _ = self._collect(item, stopping=True)
            self._serve(batch)

    def _collect(self, first: _Request, stopping: bool) -> tuple[list[_Request], bool]:
        batch, size = [first], len(first.tensors)
        deadline = time.perf_counter() + self.max_wait
        while size < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                # Wait only while callers are still preprocessing their images.
                if stopping or self._callers <= len(batch):
                    break
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is _STOP:
                stopping = True
                continue
            if size + len(item.tensors) > self.max_batch or item.loaded is not first.loaded:
                self._serve([item])  # does not fit this batch (or another model): alone
                continue
            batch.append(item)
            size += len(item.tensors)
        return batch, stopping

    def _next_queued(self) -> _Request | None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return None
            if item is not _STOP:
                return item

    def _serve(self, batch: list[_Request]) -> None:
        loaded = batch[0].loaded
        total = sum(len(r.tensors) for r in batch)
        try:
            started = time.perf_counter()
            logits = loaded.forward(torch.cat([r.tensors for r in batch]))
            forward_ms_each = (time.perf_counter() - started) * 1000 / total
        except Exception as exc:  # a model failure belongs to every request in the batch
            logger.exception("Forward pass failed for a batch of %d images", total)
            for request in batch:
                request.future.set_exception(exc)
            return
        offset = 0
        for request in batch:
            n = len(request.tensors)
            rows = loaded.top_k(logits[offset : offset + n], request.top_k)
            offset += n
            ms = request.preprocess_ms / n + forward_ms_each
            request.future.set_result([Classification(row, loaded.identity, ms) for row in rows])
