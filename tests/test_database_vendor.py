"""The suite runs twice, on SQLite and on PostgreSQL (scripts/with-postgres). A run that
was meant for PostgreSQL but silently fell back to SQLite would test SQLite twice; this
makes it fail instead."""

import os
from urllib.parse import urlsplit

import pytest
from django.db import connection

# DATABASE_URL schemes (dj-database-url's) -> Django's vendor name; none means SQLite,
# the settings' default.
VENDOR_OF_SCHEME = {
    "": "sqlite",
    "sqlite": "sqlite",
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "pgsql": "postgresql",
}


def asked_for() -> str:
    """The database this run was asked for, from the environment alone."""
    scheme = urlsplit(os.getenv("DATABASE_URL", "")).scheme
    assert scheme in VENDOR_OF_SCHEME, f"no test covers a DATABASE_URL of scheme {scheme!r}"
    vendor = VENDOR_OF_SCHEME[scheme]
    # scripts/with-postgres says which database it started, beside the URL it exports.
    expected = os.getenv("RECOGNITION_EXPECT_DB") or vendor
    assert expected == vendor, f"RECOGNITION_EXPECT_DB={expected} but DATABASE_URL is {vendor}"
    return vendor


@pytest.mark.django_db
def test_the_tests_run_on_the_database_the_run_was_asked_for():
    assert connection.vendor == asked_for()


@pytest.mark.django_db
def test_the_database_answers_as_the_server_it_claims_to_be():
    """Asked of the server itself: each function exists only on its own kind."""
    query, answer = {
        "sqlite": ("SELECT sqlite_version()", "3."),
        "postgresql": ("SELECT version()", "PostgreSQL "),
    }[asked_for()]

    with connection.cursor() as cursor:
        cursor.execute(query)
        [version] = cursor.fetchone()

    assert version.startswith(answer)


@pytest.mark.django_db
@pytest.mark.skipif(asked_for() != "postgresql", reason="only on the PostgreSQL run")
def test_postgresql_is_recent_and_the_tests_use_their_own_database():
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        [version] = cursor.fetchone()
    assert int(version.split(".")[0]) >= 13
    assert connection.settings_dict["NAME"].startswith("test_")
