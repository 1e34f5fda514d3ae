import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create an administrator when the site has none, with a random password kept "
        "in the data dir (readable by its owner only), and say how to log in."
    )

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")

    def handle(self, *args, username, **options):
        users = get_user_model()
        password_file = settings.DATA_DIR / "admin-password.txt"
        if users.objects.filter(is_superuser=True).exists():
            hint = f" (first password: {password_file})" if password_file.exists() else ""
            return f"An administrator exists already{hint}."
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser(username=username, email="", password=password)
        settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        return (
            f"Created administrator {username!r} with password {password} "
            f"(also kept in {password_file}). Change it after logging in."
        )
