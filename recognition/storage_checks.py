"""The system check of the object store: with RECOGNITION_S3_BUCKET set, the bucket must
answer to the configured credentials before a process serves. `manage.py check` reports
a failure; gunicorn (gunicorn.conf.py, on_starting) and every other management command
refuse to start on it (classifier_site/startup.py), each with one paragraph naming the
variable to fix, instead of every upload failing later with 503.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from django.core import checks
from django.core.files.storage import storages

from .storage_backends import ObjectStoreStorage

# One quick attempt: a store that is away should stop the start within seconds.
_PROBE = Config(connect_timeout=3, read_timeout=10, retries={"max_attempts": 1, "mode": "standard"})


@checks.register("storage")
def check_object_store(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    backend = storages["default"]
    if not isinstance(backend, ObjectStoreStorage):
        return []  # local disk: MEDIA_ROOT is made on first write
    problem = object_store_problem(backend)
    return [checks.Error(problem, id="recognition.E101")] if problem else []


def object_store_problem(backend: ObjectStoreStorage) -> str | None:
    """Why the bucket cannot be used, as one paragraph naming what to fix; None if it can."""
    bucket = backend.bucket_name
    where = _where(backend)
    try:
        backend.probe_client(_PROBE).head_bucket(Bucket=bucket)
    except NoCredentialsError:
        return (
            f"RECOGNITION_S3_BUCKET is set ({bucket}) but no credentials for the object store "
            "were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to the keys of an "
            "identity that may read and write that bucket, or unset RECOGNITION_S3_BUCKET to "
            "keep files on the local disk."
        )
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404:
            return (
                f"The bucket {bucket} named by RECOGNITION_S3_BUCKET does not exist {where}: "
                "create it (private, no public access), or correct RECOGNITION_S3_BUCKET or "
                "AWS_S3_ENDPOINT_URL."
            )
        if status in (401, 403):
            return (
                f"The object store {where} refuses the credentials for bucket {bucket}: check "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (a wrong or revoked key, or an "
                "identity without access to RECOGNITION_S3_BUCKET)."
            )
        if status in (301, 400):
            return (
                f"The object store {where} answers for bucket {bucket} from another region "
                f"(status {status}): set AWS_S3_REGION_NAME to the bucket's region."
            )
        return (
            f"The object store {where} answered status {status} for bucket {bucket}: check "
            "AWS_S3_ENDPOINT_URL, AWS_S3_REGION_NAME and RECOGNITION_S3_BUCKET."
        )
    except BotoCoreError as exc:  # refused, timed out, a host that does not resolve
        return (
            f"The object store {where} cannot be reached ({type(exc).__name__}): check "
            "AWS_S3_ENDPOINT_URL (scheme, host and port of the S3 server) and that the "
            "server is running and reachable from this machine."
        )
    return None


def _where(backend: ObjectStoreStorage) -> str:
    if not backend.endpoint_url:
        return "at AWS S3"
    parts = urlsplit(backend.endpoint_url)  # the host only: the URL may carry more
    return f"at {parts.scheme}://{parts.netloc} (AWS_S3_ENDPOINT_URL)"
