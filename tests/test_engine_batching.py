"""Micro-batching: concurrent callers share forward passes, each gets its own results,
one caller's bad image fails only that caller, and shutdown answers what is queued.

No test here times anything. Each one holds a forward pass or a caller's preprocessing on
an event, so the arrangement it needs (requests queued behind a busy model, a caller still
on the way) happens on every run, however fast or loaded the machine is.
"""

import dataclasses
import threading

import pytest
from PIL import Image

from recognition.engine.batching import BatchingClassifier, ClassifierClosed, Overloaded
from recognition.engine.classifier import Classifier
from tests.helpers import noise_picture

# Every wait below is for an event that a two-core machine with every core busy reaches
# in well under a second; this only turns a deadlock (or a runner waiting for company
# it should not wait for) into a failure instead of a hung test run.
HANG_SECONDS = 120


class ForwardLog:
    """Wraps the real model's forward pass to record the batch sizes it is given; with
    `hold`, each pass waits for `release` after it has started (`busy` says it has)."""

    def __init__(self, classifier: Classifier, fail: bool = False, hold: bool = False):
        self.sizes: list[int] = []
        self.fail = fail
        self.busy = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        real = classifier.current()

        def forward(batch):
            self.sizes.append(len(batch))
            self.busy.set()
            self.release.wait(HANG_SECONDS)
            if self.fail:
                raise RuntimeError("injected model failure")
            return real.forward(batch)

        self.loaded = dataclasses.replace(real, forward=forward)
        classifier.current = lambda: self.loaded


class Queued:
    """Counts the requests callers hand to the runners, so a test can wait until every
    caller is queued instead of guessing how long that takes."""

    def __init__(self, classifier: BatchingClassifier):
        self.count = 0
        self._changed = threading.Condition()
        real_put = classifier._queue.put

        def put(item, *args, **kwargs):
            real_put(item, *args, **kwargs)
            with self._changed:
                self.count += 1
                self._changed.notify_all()

        classifier._queue.put = put

    def wait_for(self, count: int) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.count >= count, HANG_SECONDS)


def _start(count: int, work) -> tuple[list[threading.Thread], list]:
    """Start work(i) in `count` threads; their results (or exceptions) land in the list."""
    results: list = [None] * count

    def run(i):
        try:
            results[i] = work(i)
        except Exception as exc:  # returned for the test to inspect
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads, results


def _join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(HANG_SECONDS)
    assert not any(thread.is_alive() for thread in threads), "a caller was never answered"


def _in_threads(count: int, work) -> list:
    """Run work(i) in `count` threads started together; results (or exceptions) in order."""
    barrier = threading.Barrier(count, timeout=HANG_SECONDS)
    threads, results = _start(count, lambda i: (barrier.wait(), work(i))[1])
    _join(threads)
    return results


def _behind_a_busy_model(classifier: BatchingClassifier, count: int, work) -> tuple[list, list[int]]:
    """work(0) goes first and alone; while the model is busy with it, work(1) ...
    work(count - 1) all queue up behind it. Returns the results and the batch sizes."""
    log = ForwardLog(classifier, hold=True)
    queued = Queued(classifier)
    try:
        first, first_result = _start(1, work)
        assert log.busy.wait(HANG_SECONDS)  # the model is working on the first request
        followers, follower_results = _start(count - 1, lambda i: work(i + 1))
        assert queued.wait_for(count)  # every other request waits behind it
    finally:
        log.release.set()  # on a failure too: no runner is left holding a batch
    _join(first + followers)
    return first_result + follower_results, log.sizes


@pytest.fixture
def batching(prepared_models_dir):
    classifier = BatchingClassifier(prepared_models_dir, max_batch=8, max_wait_ms=5)
    yield classifier
    classifier.close()


def test_requests_queued_while_the_model_is_busy_share_its_next_forward_pass(batching):
    results, sizes = _behind_a_busy_model(
        batching, 6, lambda i: batching.classify([noise_picture(i)])
    )

    assert all(len(result[0].predictions) == 3 for result in results)
    assert sizes == [1, 5]


def test_each_caller_gets_the_results_for_its_own_image(batching, prepared_models_dir):
    alone = Classifier(prepared_models_dir)
    expected = [alone.classify([noise_picture(i)], top_k=5)[0] for i in range(6)]

    got, sizes = _behind_a_busy_model(
        batching, 6, lambda i: batching.classify([noise_picture(i)], top_k=5)[0]
    )

    assert sizes == [1, 5]  # five of them really shared a pass
    for mine, reference in zip(got, expected):
        assert [p.index for p in mine.predictions] == [p.index for p in reference.predictions]
        for a, b in zip(mine.predictions, reference.predictions):
            assert a.score == pytest.approx(b.score, abs=1e-4)


def test_callers_can_ask_for_different_numbers_of_labels_in_one_batch(batching):
    got, sizes = _behind_a_busy_model(
        batching, 5, lambda i: batching.classify([noise_picture(i)], top_k=max(i, 1))[0]
    )

    assert sizes == [1, 4]
    assert [len(result.predictions) for result in got[1:]] == [1, 2, 3, 4]


class HeldPreprocessor:
    """The real preprocessor, except that preprocessing `held` waits for `release`."""

    def __init__(self, real, held: Image.Image):
        self.real, self.held = real, held
        self.entered, self.release = threading.Event(), threading.Event()

    def batch(self, images):
        if any(image is self.held for image in images):
            self.entered.set()
            self.release.wait(HANG_SECONDS)
        return self.real.batch(images)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_runner_waits_for_a_caller_still_preprocessing_and_batches_them_together(
    prepared_models_dir,
):
    # The wait for company is capped far above anything this test waits for.
    classifier = BatchingClassifier(
        prepared_models_dir, max_batch=8, max_wait_ms=HANG_SECONDS * 1000
    )
    log = ForwardLog(classifier)
    late_picture = noise_picture(1)
    preprocessor = HeldPreprocessor(log.loaded.preprocessor, held=late_picture)
    log.loaded = dataclasses.replace(log.loaded, preprocessor=preprocessor)
    try:
        late, late_result = _start(1, lambda i: classifier.classify([late_picture]))
        assert preprocessor.entered.wait(HANG_SECONDS)  # on its way, not yet queued
        early_answered = threading.Event()
        early, early_result = _start(
            1, lambda i: (classifier.classify([noise_picture(0)]), early_answered.set())[0]
        )

        # A runner that waits for company cannot answer the early request before the
        # late one is released, so this wait always runs out; one that served the early
        # request alone would answer it within the second on any machine but a stalled
        # one (which could then miss the break, never fail a correct runner).
        assert not early_answered.wait(1.0), "the runner did not wait for the late caller"
        preprocessor.release.set()
        _join(late + early)
    finally:
        classifier.close()

    assert len(early_result[0][0].predictions) == 3 and len(late_result[0][0].predictions) == 3
    assert log.sizes == [2]


def test_a_lone_request_does_not_wait_for_company(prepared_models_dir):
    # An hour of patience: a lone request that waited for company would be answered
    # long after HANG_SECONDS, while one that does not wait is answered in one short pass.
    patient = BatchingClassifier(prepared_models_dir, max_batch=8, max_wait_ms=3_600_000)
    try:
        log = ForwardLog(patient)  # loads the model
        lone, result = _start(1, lambda i: patient.classify([noise_picture(1)]))
        _join(lone)
    finally:
        patient.close()

    assert len(result[0][0].predictions) == 3
    assert log.sizes == [1]


def test_one_callers_bad_image_fails_only_that_caller(batching):
    greyscale = noise_picture(9).convert("L")  # not RGB: preprocessing it fails

    results = _in_threads(
        4, lambda i: batching.classify([greyscale if i == 2 else noise_picture(i)])
    )

    assert isinstance(results[2], Exception)
    for i in (0, 1, 3):
        assert len(results[i][0].predictions) == 3


def test_a_failed_forward_pass_fails_its_batch_and_the_next_one_succeeds(batching):
    log = ForwardLog(batching, fail=True)
    with pytest.raises(RuntimeError, match="injected model failure"):
        batching.classify([noise_picture(0)])

    log.fail = False

    assert len(batching.classify([noise_picture(1)])[0].predictions) == 3


def test_closing_answers_the_queued_requests_then_refuses_new_ones(prepared_models_dir):
    classifier = BatchingClassifier(prepared_models_dir, max_batch=2, max_wait_ms=0)
    log = ForwardLog(classifier, hold=True)
    queued = Queued(classifier)
    callers, answers = _start(5, lambda i: classifier.classify([noise_picture(i)]))
    try:
        assert log.busy.wait(HANG_SECONDS)  # the runner holds one batch ...
        assert queued.wait_for(5)  # ... and every request has been handed over

        closing = threading.Thread(target=classifier.close, kwargs={"timeout": HANG_SECONDS})
        closing.start()
    finally:
        log.release.set()
    _join([*callers, closing])

    assert all(len(answer[0].predictions) == 3 for answer in answers), answers
    assert sum(log.sizes) == 5
    with pytest.raises(ClassifierClosed):
        classifier.classify([noise_picture(7)])


def test_two_runners_work_on_two_batches_at_once(prepared_models_dir):
    # Batches of one: the two requests cannot share a batch, so they need two passes.
    classifier = BatchingClassifier(prepared_models_dir, max_batch=1, max_wait_ms=0, runners=2)
    log = ForwardLog(classifier)
    real_forward, both_in = log.loaded.forward, threading.Barrier(2, timeout=HANG_SECONDS)

    def forward_meeting_the_other_runner(batch):
        both_in.wait()  # breaks (and fails the callers) unless two passes overlap
        return real_forward(batch)

    log.loaded = dataclasses.replace(log.loaded, forward=forward_meeting_the_other_runner)
    try:
        results = _in_threads(2, lambda i: classifier.classify([noise_picture(i)]))
    finally:
        classifier.close()

    assert all(not isinstance(r, Exception) and len(r[0].predictions) == 3 for r in results)


def test_closing_with_several_runners_answers_everyone_and_stops_them_all(prepared_models_dir):
    classifier = BatchingClassifier(prepared_models_dir, max_batch=2, max_wait_ms=0, runners=3)

    results = _in_threads(12, lambda i: classifier.classify([noise_picture(i)]))
    classifier.close(timeout=HANG_SECONDS)

    assert all(len(r[0].predictions) == 3 for r in results)
    assert not any(runner.is_alive() for runner in classifier._runners)
    with pytest.raises(ClassifierClosed):
        classifier.classify([noise_picture(99)])


# --- Backpressure and faults ------------------------------------------------------------


def test_a_full_queue_answers_overloaded_at_once_and_the_queued_requests_still_succeed(
    prepared_models_dir,
):
    classifier = BatchingClassifier(
        prepared_models_dir, max_batch=8, max_queue=3, wait_timeout=HANG_SECONDS
    )
    log = ForwardLog(classifier, hold=True)
    queued = Queued(classifier)
    try:
        first, first_result = _start(1, lambda i: classifier.classify([noise_picture(0)]))
        assert log.busy.wait(HANG_SECONDS)
        followers, follower_results = _start(
            2, lambda i: classifier.classify([noise_picture(i + 1)])
        )
        assert queued.wait_for(3)

        # The model is still held: an answer now cannot have come from waiting for it.
        extra, extra_result = _start(1, lambda i: classifier.classify([noise_picture(9)]))
        _join(extra)
        assert isinstance(extra_result[0], Overloaded)
        assert (classifier.shed, classifier.shedding(), classifier.queued) == (1, True, 3)
    finally:
        log.release.set()
    _join(first + followers)
    try:
        assert all(len(r[0].predictions) == 3 for r in first_result + follower_results)
        assert classifier.queued == 0
        assert len(classifier.classify([noise_picture(5)])[0].predictions) == 3
    finally:
        classifier.close()


def test_a_request_that_waits_too_long_is_answered_overloaded_and_then_passed_by(
    prepared_models_dir,
):
    # The model is held until both callers have given up, so the wait surely runs out.
    classifier = BatchingClassifier(prepared_models_dir, max_batch=1 + 1, wait_timeout=0.2)
    log = ForwardLog(classifier, hold=True)
    queued = Queued(classifier)
    try:
        first, first_result = _start(1, lambda i: classifier.classify([noise_picture(0)] * 2))
        assert log.busy.wait(HANG_SECONDS)
        second, second_result = _start(1, lambda i: classifier.classify([noise_picture(1)]))
        assert queued.wait_for(2)
        _join(first + second)
        assert isinstance(first_result[0], Overloaded)  # in the forward pass, abandoned
        assert isinstance(second_result[0], Overloaded)  # still queued, cancelled
    finally:
        log.release.set()
    try:
        classifier.wait_timeout = HANG_SECONDS
        assert len(classifier.classify([noise_picture(2)])[0].predictions) == 3
        # The abandoned request was never run: only the first batch and the last.
        assert log.sizes == [2, 1]
        assert classifier.shed == 2
    finally:
        classifier.close()


def test_a_fault_in_the_runner_loop_fails_only_its_batch_and_the_runner_keeps_serving(
    prepared_models_dir,
):
    classifier = BatchingClassifier(prepared_models_dir, max_batch=8, wait_timeout=HANG_SECONDS)
    real_collect = classifier._collect
    faults = iter([RuntimeError("injected fault in the runner loop")])

    def collect(batch):  # the fault comes once, outside the forward pass
        fault = next(faults, None)
        if fault is not None:
            raise fault
        return real_collect(batch)

    classifier._collect = collect
    try:
        with pytest.raises(RuntimeError, match="injected fault in the runner loop"):
            classifier.classify([noise_picture(0)])

        # The same single runner answers the next requests.
        results = _in_threads(3, lambda i: classifier.classify([noise_picture(i)]))
        assert all(len(r[0].predictions) == 3 for r in results)
    finally:
        classifier.close()


def test_a_fault_while_ranking_results_fails_that_batch_only(batching, monkeypatch):
    loaded_model = type(batching.current())
    real_top_k = loaded_model.top_k
    calls = []

    def top_k(self, logits, k):
        calls.append(len(logits))
        if len(calls) == 1:
            raise ValueError("injected fault while ranking")
        return real_top_k(self, logits, k)

    monkeypatch.setattr(loaded_model, "top_k", top_k)

    with pytest.raises(ValueError, match="injected fault while ranking"):
        batching.classify([noise_picture(0)])

    assert len(batching.classify([noise_picture(1)])[0].predictions) == 3
