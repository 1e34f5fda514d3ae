"""Which embedded broker (no server) for `make run`: kombu's filesystem transport or its
SQLAlchemy transport on an SQLite database. For each: queue one task, let a worker start
it, SIGKILL the worker mid-task, start another worker, and count how often the task ran
to its end; then queue 200 tasks from 4 processes at once and count what one worker ran.

    .venv/bin/python bench/embedded_broker.py        # SQLAlchemy must be importable

Measured here (README, "Background work"): both lost the killed worker's message (the
filesystem transport removes the file when it hands the message out, the SQLAlchemy one
hides the row and only an acknowledgement or a clean shutdown brings it back), and both
delivered all 200 concurrent messages once. Neither is reliable under a kill on its own,
so the database's claim and sweep (recognition/tasks.py) must recover the work anyway;
the filesystem transport needs no extra dependency and never takes the SQLite write lock
an upload is waiting for, so it is the one chosen.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

APP = textwrap.dedent(
    """
    import os, time
    from pathlib import Path
    from celery import Celery

    folder = Path(os.environ["BENCH_DIR"])
    app = Celery("bench", broker=os.environ["BENCH_BROKER"])
    app.conf.update(
        broker_transport_options=eval(os.environ["BENCH_OPTIONS"]),
        task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
        worker_pool="threads", worker_concurrency=1, task_ignore_result=True,
        broker_connection_retry_on_startup=True,
    )

    @app.task(name="bench.work")
    def work(number, hold=False):
        (folder / f"started-{number}").touch()
        while hold and not (folder / "release").exists():
            time.sleep(0.05)
        with open(folder / "finished", "a") as log:
            log.write(f"{number}\\n")
    """
)


def transports(folder: Path) -> dict[str, tuple[str, dict]]:
    queue = folder / "queue"
    queue.mkdir()
    return {
        "filesystem": (
            "filesystem://",
            {"data_folder_in": str(queue), "data_folder_out": str(queue),
             "control_folder": str(folder / "control")},
        ),
        "sqlalchemy": (f"sqla+sqlite:///{folder / 'broker.sqlite3'}", {}),
    }


def run_case(name: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "benchapp.py").write_text(APP)
        broker, options = transports(folder)[name]
        env = {**os.environ, "BENCH_DIR": str(folder), "BENCH_BROKER": broker,
               "BENCH_OPTIONS": repr(options), "PYTHONPATH": f"{folder}:{os.environ.get('PYTHONPATH', '')}"}

        def worker() -> subprocess.Popen:
            return subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "benchapp", "worker", "--loglevel=WARNING",
                 "--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )

        def send(code: str) -> None:
            subprocess.run([sys.executable, "-c", f"from benchapp import work\n{code}"],
                           cwd=folder, env=env, check=True)

        finished = folder / "finished"
        send("work.delay(0, hold=True)")
        first = worker()
        wait_for(lambda: (folder / "started-0").exists(), "the first worker to start the task")
        first.send_signal(signal.SIGKILL)
        first.wait()
        (folder / "release").touch()
        second = worker()
        time.sleep(20)  # long enough for any redelivery a transport would do by itself
        redelivered = finished.exists() and finished.read_text().split().count("0")

        senders = [subprocess.Popen(
            [sys.executable, "-c", f"from benchapp import work\nfor n in range({k}, 200, 4): work.delay(n)"],
            cwd=folder, env=env) for k in range(1, 5)]
        for sender in senders:
            sender.wait()
        wait_for(lambda: finished.exists() and len(finished.read_text().split()) >= 199 + (redelivered or 0),
                 "the 200 concurrent tasks", timeout=300)
        time.sleep(3)
        second.terminate()
        second.wait()
        ran = finished.read_text().split()
        runs = [ran.count(str(n)) for n in range(1, 200)]
        return (f"{name}: killed task ran {redelivered or 0} time(s) after the restart; "
                f"of 199 concurrent tasks {sum(r >= 1 for r in runs)} ran, "
                f"{sum(r > 1 for r in runs)} more than once")


def wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.1)


if __name__ == "__main__":
    for case in ("filesystem", "sqlalchemy"):
        if case == "sqlalchemy":
            try:
                import sqlalchemy  # noqa: F401
            except ImportError:
                print("sqlalchemy: not installed here, not measured")
                continue
        print(run_case(case), flush=True)
