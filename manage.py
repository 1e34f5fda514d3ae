#!/usr/bin/env python
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "classifier_site.settings")
    from django.conf import settings
    from django.core.management import execute_from_command_line

    from classifier_site.env import BadEnvironmentValue
    from classifier_site.startup import exit_on_bad_environment

    try:
        settings.INSTALLED_APPS  # loads the settings: a bad variable is one paragraph
    except BadEnvironmentValue as exc:
        exit_on_bad_environment(exc, "manage.py")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
