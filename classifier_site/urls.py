from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from recognition.throttling import throttle_logins
from recognition.views.accounts import login_page, signup_page

# The admin's own login form is rate-limited like the site's.
admin.site.login = throttle_logins(admin.site.login)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", login_page, name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", signup_page, name="signup"),
    path("api/v1/", include("recognition.api.urls")),
    path("", include("recognition.urls")),
]

handler400 = "recognition.views.errors.bad_request"
handler403 = "recognition.views.errors.permission_denied"
handler404 = "recognition.views.errors.page_not_found"
handler500 = "recognition.views.errors.server_error"
