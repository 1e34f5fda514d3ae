"""Micro-batching: concurrent callers share forward passes, each gets its own results,
one caller's bad image fails only that caller, and shutdown answers what is queued."""

import dataclasses
import threading
import time

import numpy as np
import pytest
from PIL import Image

from recognition.engine.batching import BatchingClassifier, ClassifierClosed
from recognition.engine.classifier import Classifier


def _picture(seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


class ForwardLog:
    """Wraps the real model's forward pass to record the batch sizes it is given."""

    def __init__(self, classifier: Classifier, fail: bool = False):
        self.sizes: list[int] = []
        self.fail = fail
        real = classifier.current()

        def forward(batch):
            self.sizes.append(len(batch))
            if self.fail:
                raise RuntimeError("injected model failure")
            return real.forward(batch)

        self.loaded = dataclasses.replace(real, forward=forward)
        classifier.current = lambda: self.loaded


def _in_threads(count: int, work) -> list:
    """Run work(i) in `count` threads started together; results (or exceptions) in order."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i):
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # returned for the test to inspect
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.fixture
def batching(prepared_models_dir):
    classifier = BatchingClassifier(prepared_models_dir, max_batch=8, max_wait_ms=500)
    yield classifier
    classifier.close()


def test_concurrent_requests_share_forward_passes(batching):
    log = ForwardLog(batching)

    _in_threads(6, lambda i: batching.classify([_picture(i)]))

    assert sum(log.sizes) == 6
    assert max(log.sizes) > 1, f"no request was batched: {log.sizes}"
    assert len(log.sizes) < 6


def test_each_caller_gets_the_results_for_its_own_image(batching, prepared_models_dir):
    alone = Classifier(prepared_models_dir)
    expected = [alone.classify([_picture(i)], top_k=5)[0] for i in range(6)]

    got = _in_threads(6, lambda i: batching.classify([_picture(i)], top_k=5)[0])

    for mine, reference in zip(got, expected):
        assert [p.index for p in mine.predictions] == [p.index for p in reference.predictions]
        for a, b in zip(mine.predictions, reference.predictions):
            assert a.score == pytest.approx(b.score, abs=1e-4)


def test_callers_can_ask_for_different_numbers_of_labels_in_one_batch(batching):
    got = _in_threads(4, lambda i: batching.classify([_picture(i)], top_k=i + 1)[0])

    assert [len(result.predictions) for result in got] == [1, 2, 3, 4]


def test_a_lone_request_does_not_wait_for_company(prepared_models_dir):
    patient = BatchingClassifier(prepared_models_dir, max_batch=8, max_wait_ms=5000)
    try:
        patient.classify([_picture(0)])  # loads the model
        started = time.perf_counter()
        patient.classify([_picture(1)])
        elapsed = time.perf_counter() - started
    finally:
        patient.close()

    assert elapsed < 2.5, f"a lone request waited {elapsed:.1f}s of the 5s allowed for company"


def test_one_callers_bad_image_fails_only_that_caller(batching):
    greyscale = _picture(9).convert("L")  # not RGB: preprocessing it fails

    results = _in_threads(
        4, lambda i: batching.classify([greyscale if i == 2 else _picture(i)])
    )

    assert isinstance(results[2], Exception)
    for i in (0, 1, 3):
        assert len(results[i][0].predictions) == 3


def test_a_failed_forward_pass_fails_its_batch_and_the_next_one_succeeds(batching):
    log = ForwardLog(batching, fail=True)
    with pytest.raises(RuntimeError, match="injected model failure"):
        batching.classify([_picture(0)])

    log.fail = False

    assert len(batching.classify([_picture(1)])[0].predictions) == 3


def test_closing_answers_the_queued_requests_then_refuses_new_ones(prepared_models_dir):
    classifier = BatchingClassifier(prepared_models_dir, max_batch=2, max_wait_ms=0)
    log = ForwardLog(classifier)
    real_forward, busy, release = log.loaded.forward, threading.Event(), threading.Event()

    held: list[int] = []

    def held_forward(batch):
        held.append(len(batch))
        busy.set()
        release.wait(30)
        return real_forward(batch)

    log.loaded = dataclasses.replace(log.loaded, forward=held_forward)
    callers = [
        threading.Thread(target=lambda i=i: answers.append(classifier.classify([_picture(i)])))
        for i in range(5)
    ]
    answers: list = []
    for caller in callers:
        caller.start()
    assert busy.wait(30)  # the worker holds one batch; the rest queue behind it
    deadline = time.monotonic() + 30
    while held[0] + classifier._queue.qsize() < 5 and time.monotonic() < deadline:
        time.sleep(0.01)

    closing = threading.Thread(target=classifier.close)
    closing.start()
    release.set()
    for thread in (*callers, closing):
        thread.join(30)

    assert len(answers) == 5 and all(len(a[0].predictions) == 3 for a in answers)
    with pytest.raises(ClassifierClosed):
        classifier.classify([_picture(7)])


def test_two_runners_work_on_two_batches_at_once(prepared_models_dir):
    # Batches of one: the two requests cannot share a batch, so they need two passes.
    classifier = BatchingClassifier(prepared_models_dir, max_batch=1, max_wait_ms=0, runners=2)
    log = ForwardLog(classifier)
    real_forward, both_in = log.loaded.forward, threading.Barrier(2, timeout=30)

    def forward_meeting_the_other_runner(batch):
        both_in.wait()  # breaks (and fails the callers) unless two passes overlap
        return real_forward(batch)

    log.loaded = dataclasses.replace(log.loaded, forward=forward_meeting_the_other_runner)
    try:
        results = _in_threads(2, lambda i: classifier.classify([_picture(i)]))
    finally:
        classifier.close()

    assert all(not isinstance(r, Exception) and len(r[0].predictions) == 3 for r in results)


def test_closing_with_several_runners_answers_everyone_and_stops_them_all(prepared_models_dir):
    classifier = BatchingClassifier(prepared_models_dir, max_batch=2, max_wait_ms=0, runners=3)

    results = _in_threads(12, lambda i: classifier.classify([_picture(i)]))
    classifier.close()

    assert all(len(r[0].predictions) == 3 for r in results)
    assert not any(runner.is_alive() for runner in classifier._runners)
    with pytest.raises(ClassifierClosed):
        classifier.classify([_picture(99)])
