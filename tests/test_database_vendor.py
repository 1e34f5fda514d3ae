"""The suite runs twice, on SQLite and on PostgreSQL (scripts/with-postgres). A run that
was meant for PostgreSQL but silently fell back to SQLite would test SQLite twice; this
makes it fail instead."""

import os

import pytest
from django.db import connection

EXPECTED = os.getenv("RECOGNITION_EXPECT_DB", "")


@pytest.mark.django_db
def test_the_tests_run_on_the_database_the_run_was_meant_for():
    if not EXPECTED:  # a plain run: whatever DATABASE_URL says (SQLite by default)
        assert connection.vendor in ("sqlite", "postgresql")
        return
    assert connection.vendor == EXPECTED
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


@pytest.mark.django_db
@pytest.mark.skipif(EXPECTED != "postgresql", reason="only on the PostgreSQL run")
def test_postgresql_answers_as_a_real_server():
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        [version] = cursor.fetchone()
    assert int(version.split(".")[0]) >= 13
    assert connection.settings_dict["NAME"].startswith("test_")
