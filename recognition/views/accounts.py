"""Login, rate-limited; self-signup, only when RECOGNITION_ALLOW_SIGNUP is on (otherwise
the page does not exist)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.views import LoginView
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from ..accounts import user_signup
from ..forms import SignupForm
from ..throttling import throttle_logins

login_page = throttle_logins(LoginView.as_view(redirect_authenticated_user=True))


@require_http_methods(["GET", "POST"])
def signup_page(request: HttpRequest) -> HttpResponse:
    if not settings.RECOGNITION_ALLOW_SIGNUP:
        raise Http404("Sign-up is closed; ask an administrator for an account.")
    if request.user.is_authenticated:
        return redirect(settings.LOGIN_REDIRECT_URL)
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = user_signup(
            username=form.cleaned_data["username"], password=form.cleaned_data["password1"]
        )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect(settings.LOGIN_REDIRECT_URL)
    return render(request, "registration/signup.html", {"form": form})
