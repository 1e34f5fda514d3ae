from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from recognition.views.accounts import signup_page

urlpatterns = [
    path("admin/", admin.site.urls),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", signup_page, name="signup"),
    path("api/v1/", include("recognition.api.urls")),
    path("", include("recognition.urls")),
]

handler400 = "recognition.views.errors.bad_request"
handler403 = "recognition.views.errors.permission_denied"
handler404 = "recognition.views.errors.page_not_found"
handler500 = "recognition.views.errors.server_error"
