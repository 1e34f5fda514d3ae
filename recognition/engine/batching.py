"""Micro-batching: concurrent requests in one process share forward passes.

Requests that arrive together are grouped into one forward pass, which both backends run
faster per image than one at a time: on two cores, bench/engine.py measured 50.6 images/s
at batch 8 against 40.1 at batch 1 with ONNX Runtime, and 50.3 against 31.1 with
TorchScript (README, "Performance"). Each caller preprocesses its own images, in its own
thread, and waits for its own results; runner threads run the model. A lone request is
never held back: a runner waits for company only while other callers are still
preprocessing, and at most `max_wait_ms`.

Runners are daemon threads, so a forgotten classifier cannot keep a process alive, but
they must be stopped before the interpreter finalizes: a runner still freeing its last
batch's tensors then (torch releases the GIL to do it, and a busy machine can leave the
runner there while the main thread exits) is killed by Python inside torch's C++ code,
which aborts the process after its work is done ("terminate called without an active
exception", SIGABRT). So every classifier not closed by then is closed at exit.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .classifier import Classifier, LoadedModel, Recognition
from .defaults import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_WAIT_MS,
    DEFAULT_TOP_K,
    DEFAULT_WAIT_TIMEOUT_S,
)

logger = logging.getLogger(__name__)


class ClassifierClosed(RuntimeError):
    pass


class Overloaded(Exception):
    """More requests wait for the model than it may queue, or one waited too long: the
    caller is answered at once (503, Retry-After) instead of joining a line that grows
    without limit. Nothing of the request was kept."""

    status = 503
    code = "overloaded"
    message = (
        "The server is too busy to recognise this image right now; nothing was saved. "
        "Please send it again in a few seconds."
    )
    retry_after = 2  # seconds: a few batches' time


# How long after its last shed request a classifier still says it is shedding (health).
SHEDDING_WINDOW_S = 10.0




@dataclass
class _Request:
    loaded: LoadedModel
    tensors: torch.Tensor  # (n, 3, crop, crop)
    top_k: int
    preprocess_ms: float
    future: Future = field(default_factory=Future)


_STOP = object()

# Classifiers whose runners may still be running; closed at exit, before finalization.
_open: set[BatchingClassifier] = set()
_open_lock = threading.Lock()


class BatchingClassifier(Classifier):
    """A Classifier whose classify() calls from many threads share forward passes.

    `runners` threads run forward passes, each on its own batch: with one intra-op thread
    each, the cores work on separate batches and none waits at a parallel op's barrier
    for a core that the request threads took (bench/layouts.py measures the layouts).
    """

    def __init__(
        self,
        models_dir: Path,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
        runners: int = 1,
        max_queue: int = DEFAULT_MAX_QUEUE,
        wait_timeout: float = DEFAULT_WAIT_TIMEOUT_S,
        **classifier_options: Any,  # model, threads, backend: as Classifier takes them
    ):
        super().__init__(models_dir, **classifier_options)
        self.max_batch = max(1, max_batch)
        self.max_wait = max(0.0, max_wait_ms) / 1000
        # At most this many requests wait for or are in a forward pass; 0: no limit.
        self.max_queue = max(0, max_queue)
        self.wait_timeout = wait_timeout
        self._outstanding = 0
        self._outstanding_lock = threading.Lock()
        self.shed = 0  # requests answered Overloaded since the start
        self._last_shed = float("-inf")  # time.monotonic() of the latest
        self._queue: queue.Queue = queue.Queue()
        self._on_the_way = 0  # callers preprocessing, about to queue a request
        self._on_the_way_lock = threading.Lock()
        self._closed = False
        # Taken to enqueue and to close: nothing can slip in behind the stop markers.
        self._submit_lock = threading.Lock()
        self._runners = [
            threading.Thread(target=self._run, name=f"micro-batcher-{i}", daemon=True)
            for i in range(max(1, runners))
        ]
        with _open_lock:
            _open.add(self)
        for runner in self._runners:
            runner.start()

    def classify(
        self, images: Sequence[Image.Image], top_k: int = DEFAULT_TOP_K
    ) -> list[Recognition]:
        if not images:
            return []
        # Judged before any work is spent on the images: shedding has to be cheap.
        with self._outstanding_lock:
            if self.max_queue and self._outstanding >= self.max_queue:
                self._count_shed()
                raise Overloaded()
            self._outstanding += 1
        try:
            return self._classify(images, top_k)
        finally:
            with self._outstanding_lock:
                self._outstanding -= 1

    def _classify(self, images: Sequence[Image.Image], top_k: int) -> list[Recognition]:
        with self._on_the_way_lock:
            self._on_the_way += 1
        try:
            loaded = self.current()
            started = time.perf_counter()
            tensors = loaded.preprocessor.batch(images)
            preprocess_ms = (time.perf_counter() - started) * 1000
        finally:
            with self._on_the_way_lock:
                self._on_the_way -= 1
        request = _Request(loaded, tensors, top_k, preprocess_ms)
        with self._submit_lock:
            if self._closed:
                raise ClassifierClosed("The classifier is shutting down.")
            self._queue.put(request)
        try:
            return request.future.result(timeout=self.wait_timeout)
        except TimeoutError:
            # Not taken yet: the runner will pass it by. Taken: its answer goes nowhere.
            request.future.cancel()
            with self._outstanding_lock:
                self._count_shed()
            logger.warning("A request waited over %.0f s for the model; answered overloaded",
                           self.wait_timeout)
            raise Overloaded() from None

    def _count_shed(self) -> None:  # under _outstanding_lock
        self.shed += 1
        self._last_shed = time.monotonic()

    def shedding(self) -> bool:
        return time.monotonic() - self._last_shed < SHEDDING_WINDOW_S

    @property
    def queued(self) -> int:
        """Requests waiting for or in a forward pass now."""
        return self._outstanding

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking requests, finish those already queued, stop the runners and wait
        (up to `timeout` seconds in all) until each has returned."""
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._runners:  # each runner takes exactly one, after every request
                self._queue.put(_STOP)
        deadline = time.monotonic() + timeout
        for runner in self._runners:
            runner.join(max(0.0, deadline - time.monotonic()))
        still_running = [runner.name for runner in self._runners if runner.is_alive()]
        if still_running:
            logger.warning("Runners still busy after %.0f s: %s", timeout, still_running)
        with _open_lock:
            _open.discard(self)

    def _run(self) -> None:
        # The queue is FIFO and the stop markers come after every request: a runner that
        # meets one has nothing left to answer, and the others finish their own.
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch, stopping = [item], False
            try:
                stopping = self._collect(batch)
                self._serve(batch)
            except Exception as exc:
                # Whatever broke (a bug, a bad tensor) fails this batch's requests only;
                # the runner goes on serving, so nobody else waits for a dead thread.
                logger.exception("Runner failed on a batch of %d requests", len(batch))
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(exc)
            if stopping:
                return

    def _collect(self, batch: list[_Request]) -> bool:
        """Adds to `batch` (which holds the first request) what fits; True when a stop
        marker came, so the runner returns after serving it."""
        first = batch[0]
        size = len(first.tensors)
        deadline = time.perf_counter() + self.max_wait
        while size < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                # Wait for company only while callers are still preprocessing their images.
                if self._on_the_way == 0:
                    break
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is _STOP:
                return True
            if size + len(item.tensors) > self.max_batch or item.loaded is not first.loaded:
                self._serve_alone(item)  # does not fit this batch (or another model)
                continue
            batch.append(item)
            size += len(item.tensors)
        return False

    def _serve_alone(self, request: _Request) -> None:
        try:
            self._serve([request])
        except Exception as exc:
            logger.exception("Runner failed on a request of %d images", len(request.tensors))
            if not request.future.done():
                request.future.set_exception(exc)

    def _serve(self, batch: list[_Request]) -> None:
        # A request whose caller gave up waiting is passed by.
        batch[:] = [r for r in batch if r.future.set_running_or_notify_cancel()]
        if not batch:
            return
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
            request.future.set_result([Recognition(row, loaded.identity, ms) for row in rows])


@atexit.register
def _close_all_at_exit() -> None:
    # atexit runs before finalization starts, while runners can still return normally.
    with _open_lock:
        still_open = list(_open)
    for classifier in still_open:
        classifier.close()
