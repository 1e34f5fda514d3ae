from django.urls import path

from .views import media, pages

urlpatterns = [
    path("", pages.upload_page, name="upload"),
    path("history/", pages.history_page, name="history"),
    path("uploads/<int:upload_id>/", pages.upload_detail_page, name="upload-detail"),
    path("uploads/<int:upload_id>/delete/", pages.upload_delete_page, name="upload-delete"),
    path("uploads/<int:upload_id>/image", media.upload_image, name="upload-image"),
    path("uploads/<int:upload_id>/thumbnail", media.upload_thumbnail, name="upload-thumbnail"),
]
