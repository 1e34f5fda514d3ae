"""What a server process does before it serves: load the settings and run the system
checks, and refuse to start with one paragraph per problem instead of a traceback, or
instead of failing each request later (a missing bucket, a Redis that cannot be reached).

gunicorn's master calls this before it forks workers (gunicorn.conf.py); `manage.py`
turns a bad environment variable into the same paragraph. `manage.py check` reports the
same problems.
"""

from __future__ import annotations

import os
import sys

from .env import BadEnvironmentValue


def configuration_problems() -> list[str]:
    """Every reason this process cannot serve, each as one paragraph; none when it can."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "classifier_site.settings")
    import django
    from django.core import checks

    try:
        django.setup()
    except BadEnvironmentValue as exc:
        return [str(exc)]
    problems = []
    for message in checks.run_checks():
        if message.is_serious():
            problems.append(" ".join(part for part in (message.msg, message.hint) if part))
    return problems


def refuse_bad_configuration(process: str) -> None:
    problems = configuration_problems()
    if problems:
        sys.exit(f"{process} cannot start:\n\n" + "\n\n".join(problems))


def exit_on_bad_environment(error: BadEnvironmentValue, process: str) -> None:
    sys.exit(f"{process} cannot start: {error}")
