"""The live cluster that scripts/with-cluster started: two web nodes and a worker, each
with its own data dir, on a shared PostgreSQL, Redis and S3 store.

The tests talk to the real processes: HTTP to the nodes, SQL to the database, S3 to the
store, signals to the processes; they stop and start the Redis and S3 servers themselves.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import psycopg
from botocore.config import Config

from tests.helpers import REPO
from tests.live_service import LiveResponse, fetch, upload

# These only catch a hang on a busy two-core machine; nothing is timed against them.
START_TIMEOUT = 300
SETTLE_TIMEOUT = 120
POLL = 0.2



@dataclass
class Node:
    """One process of the cluster, as cluster.json describes it; `pid` is its process
    group (gunicorn's master with its workers, or celery with its pool)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    url: str | None
    pid: int

    @property
    def host(self) -> str:  # so tests.live_service.fetch/upload take a Node
        return urllib.parse.urlsplit(self.url).hostname

    @property
    def port(self) -> int:
        return urllib.parse.urlsplit(self.url).port

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return _alive(self.pid)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie is dead, only not yet reaped


def wait_for(condition: Callable[[], object], what: str, timeout: float = SETTLE_TIMEOUT):
    """Poll until `condition()` is truthy; its value. The timeout only catches a hang."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not after {timeout}s: {what}")
        time.sleep(POLL)


def poll(read: Callable[[], object], until: Callable[[object], bool], what: str,
         timeout: float = SETTLE_TIMEOUT) -> list:
    """`wait_for` that keeps every answer of `read()`, up to and including the first one
    `until` accepts: what a client following a job over time saw, in order."""
    seen = []

    def reached() -> bool:
        seen.append(read())
        return until(seen[-1])

    wait_for(reached, what, timeout)
    return seen


class Cluster:
    def __init__(self, directory: Path):
        self.dir = directory
        described = json.loads((directory / "cluster.json").read_text())
        self.nodes = {
            name: Node(name, spec["argv"], spec["env"], Path(spec["log"]), spec["url"], spec["pid"])
            for name, spec in described["nodes"].items()
        }
        self.models: dict[str, str] = described["models"]
        self._started: list[subprocess.Popen] = []
        self.bucket = os.environ["RECOGNITION_S3_BUCKET"]

    @property
    def a(self) -> Node:
        return self.nodes["node-a"]

    @property
    def b(self) -> Node:
        return self.nodes["node-b"]

    @property
    def worker(self) -> Node:
        return self.nodes["worker"]

    # --- processes -------------------------------------------------------------------

    def kill(self, node: Node, sig: int = signal.SIGKILL) -> None:
        os.killpg(node.pid, sig)
        wait_for(lambda: not _group_alive(node.pid), f"{node.name}'s processes gone")

    def start(self, node: Node) -> None:
        """Start `node` again with its own command line and environment; healthy."""
        with node.log.open("ab") as log:
            process = subprocess.Popen(
                node.argv, cwd=REPO, env=node.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._started.append(process)  # with-cluster stops it at the end (CLUSTER_MEMBER)
        node.pid = process.pid
        self.wait_healthy(node, since=len(node.log_text()))

    def wait_healthy(self, node: Node, since: int = 0) -> None:
        def healthy():
            assert node.alive(), f"{node.name} exited:\n{node.log_text()[-3000:]}"
            if node.url is None:  # celery says it once it consumes
                return " ready." in node.log_text()[since:]
            try:
                return fetch(node, "GET", "/api/v1/health/", timeout=5).status == 200
            except OSError:
                return False

        wait_for(healthy, f"{node.name} healthy", START_TIMEOUT)

    def ensure_running(self) -> None:
        for node in self.nodes.values():
            if not node.alive():
                self.start(node)

    def reap(self) -> None:
        for process in self._started:
            process.poll()

    # --- the shared state --------------------------------------------------------------

    def sql(self, query: str, *params) -> list[tuple]:
        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as connection:
            cursor = connection.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def s3(self):
        return boto3.client(
            "s3", endpoint_url=os.environ["AWS_S3_ENDPOINT_URL"],
            aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            region_name=os.environ.get("AWS_S3_REGION_NAME") or "us-east-1",
            config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=30),
        )

    def object_names(self, prefix: str = "") -> list[str]:
        names = []
        for page in self.s3().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            names += [item["Key"] for item in page.get("Contents", [])]
        return names

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """manage.py as an operator on another machine: the cluster's variables, a data
        dir of its own."""
        env = {**self.worker.env, "RECOGNITION_DATA_DIR": str(self.dir / "operator")}
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO, env=env,
            capture_output=True, text=True, timeout=START_TIMEOUT,
        )
        if check:
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done

    def user(self, prefix: str = "user") -> User:
        return self.users(prefix, 1)[0]

    def users(self, prefix: str, count: int) -> list[User]:
        """New users, each with a password and an API token, in the cluster's database."""
        made = [User(f"{prefix}-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex, uuid.uuid4().hex[:40])
                for _ in range(count)]
        code = (
            "import json, sys; from django.contrib.auth.models import User; "
            "from rest_framework.authtoken.models import Token\n"
            "for name, password, token in json.loads(sys.argv[1]):\n"
            "    Token.objects.create(user=User.objects.create_user(name, password=password), key=token)"
        )
        env = {**self.worker.env, "RECOGNITION_DATA_DIR": str(self.dir / "operator"),
               "DJANGO_SETTINGS_MODULE": "classifier_site.settings"}
        done = subprocess.run(
            [sys.executable, "-c", "import django; django.setup()\n" + code,
             json.dumps([[u.name, u.password, u.token] for u in made])],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=START_TIMEOUT,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return made

    def data_dirs(self) -> list[Path]:
        return [Path(node.env["RECOGNITION_DATA_DIR"]) for node in self.nodes.values()]

    # --- servers the wrappers started -----------------------------------------------

    @contextmanager
    def server_stopped(self, url: str) -> Iterator[None]:
        """The server listening on `url`'s port stopped (SIGTERM), then started again with
        the same command line, directory and environment; waits until it listens."""
        port = urllib.parse.urlsplit(url).port
        pid = listening_pid(port)
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        cwd = os.readlink(f"/proc/{pid}/cwd")
        if url.startswith("redis://"):
            # redis-server overwrites its command line with a title: start it again the
            # way scripts/with-redis does, in its directory, with its pid file.
            program = shutil.which(argv[0].split()[0].decode()) or "redis-server"  # its title's first word
            argv = [program, "--bind", "127.0.0.1", "--port", str(port),
                    "--dir", cwd, "--save", "", "--appendonly", "no", "--daemonize", "yes",
                    "--pidfile", f"{cwd}/redis.pid", "--logfile", f"{cwd}/redis.log"]
        env = dict(
            item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in item
        )
        env[b"CLUSTER_MEMBER"] = str(self.dir).encode()  # with-cluster stops it at the end
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not _alive(pid) and not _accepts(port), f"the server on port {port} stopped")
        try:
            yield
        finally:
            process = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            self._started.append(process)
            wait_for(lambda: _accepts(port), f"the server on port {port} listening again", START_TIMEOUT)


@dataclass(frozen=True)
class User:
    name: str
    password: str
    token: str


def _group_alive(pgid: int) -> bool:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                return True
    return False


def _accepts(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def listening_pid(port: int) -> int:
    """The process listening on 127.0.0.1:`port` (from /proc/net/tcp and the fds)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(fields[9])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(proc.name)
        except OSError:
            continue
    raise AssertionError(f"no process listens on port {port}")


class Browser:
    """A session on one node: cookies, the login form and its CSRF token."""

    def __init__(self, node: Node):
        self.node = node
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect
        )

    def get(self, path: str) -> LiveResponse:
        try:
            with self.opener.open(self.node.url + path, timeout=120) as answer:
                return LiveResponse(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as error:
            return LiveResponse(error.code, error.headers, error.read())

    def log_in(self, user: User) -> None:
        status = self.submit_login(user)
        assert status == 302, f"login on {self.node.name}: {status}"
        assert any(cookie.name == "sessionid" for cookie in self.cookies), "not logged in"

    def submit_login(self, user: User) -> int:
        """The login form filled in and sent; the answer's status (302: logged in)."""
        form = self.get("/accounts/login/").body.decode()
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
        data = urllib.parse.urlencode(
            {"username": user.name, "password": user.password, "csrfmiddlewaretoken": csrf}
        ).encode()
        request = urllib.request.Request(
            self.node.url + "/accounts/login/", data=data, headers={"Referer": self.node.url + "/"}
        )
        try:
            with self.opener.open(request, timeout=120) as answer:
                return answer.status
        except urllib.error.HTTPError as error:
            return error.code


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


