"""Accounts made by people themselves, when RECOGNITION_ALLOW_SIGNUP permits it."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction


def user_signup(*, username: str, password: str) -> AbstractBaseUser:
    """A normal user: never staff, never superuser, whatever the request carried."""
    with transaction.atomic():
        return get_user_model().objects.create_user(username=username, password=password)
