"""The cluster tests run only inside scripts/with-cluster (`make test-cluster`), which
exports NODE_A_URL and CLUSTER_DIR; tests/conftest.py leaves this folder out of every
other run."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.live_cluster import Cluster


@pytest.fixture(autouse=True)
def recognition_settings():
    """Replaces tests/conftest.py's: these tests load no model in this process."""
    yield


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    the_cluster = Cluster(Path(os.environ["CLUSTER_DIR"]))
    yield the_cluster
    the_cluster.reap()


@pytest.fixture(autouse=True)
def cluster_running(cluster):
    """Every test starts with both nodes and the worker up (a test may have killed one)."""
    cluster.ensure_running()
    yield
