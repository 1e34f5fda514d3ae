from django.urls import path

from .views import imports, media, pages, review, statistics

urlpatterns = [
    path("", pages.upload_page, name="upload"),
    path("history/", pages.history_page, name="history"),
    path("uploads/<int:upload_id>/", pages.upload_detail_page, name="upload-detail"),
    path(
        "uploads/<int:upload_id>/correction/",
        pages.upload_correction_page,
        name="upload-correction",
    ),
    path("uploads/<int:upload_id>/delete/", pages.upload_delete_page, name="upload-delete"),
    path("uploads/<int:upload_id>/image", media.upload_image, name="upload-image"),
    path("uploads/<int:upload_id>/thumbnail", media.upload_thumbnail, name="upload-thumbnail"),
    path("review/", review.review_page, name="review"),
    path("review/<int:upload_id>/decide/", review.review_decide_page, name="review-decide"),
    path("review/<int:upload_id>/image", review.review_image, name="review-image"),
    path("imports/", imports.import_page, name="imports"),
    path("imports/<int:job_id>/", imports.import_detail_page, name="import-detail"),
    path("imports/<int:job_id>/cancel/", imports.import_cancel_page, name="import-cancel"),
    path(
        "review/statistics/", statistics.review_statistics_page, name="review-statistics"
    ),
]
