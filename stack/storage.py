"""Object storage for the stack: the MLflow server's artifact store (`STACK_ARTIFACTS`) and the
DVC remote (`STACK_DVC_REMOTE`) may be `s3://bucket/prefix` on AWS or any S3-compatible store.

Both are reached with the standard AWS settings (`AWS_ENDPOINT_URL`, `AWS_DEFAULT_REGION`,
`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or `AWS_PROFILE`), which boto3, the MLflow server
and dvc-s3 all read; see docs/team.md.
"""

from __future__ import annotations

import logging
import os
from urllib.parse import urlparse

from projects.core.cli import StageError

# what `make stack` passes on to team.env for the clients (DVC) to reach the same store; the
# keys are not among them: each user brings their own
CLIENT_SETTINGS = ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REQUEST_CHECKSUM_CALCULATION",
                   "AWS_RESPONSE_CHECKSUM_VALIDATION")  # fmt: skip


def is_s3(url: str) -> bool:
    return url.startswith("s3://")


def bucket_of(url: str) -> str:
    """The bucket of an `s3://bucket/prefix` URL."""
    bucket = urlparse(url).netloc
    if not bucket:
        raise StageError(f"{url!r} names no bucket: write s3://<bucket>/<prefix>")
    return bucket


def check_bucket(url: str, setting: str) -> None:
    """Raise a `StageError` that says what to do unless the bucket of `url` (from `setting`)
    exists and these credentials may reach it; nothing to check for a local folder."""
    if not is_s3(url):
        return
    bucket = bucket_of(url)
    try:
        import boto3
        from botocore import exceptions
    except ImportError:
        raise StageError(
            f"{setting}={url} needs boto3: install the team group (`make stack` does)"
        ) from None
    logging.getLogger("botocore").setLevel(logging.WARNING)  # where it found credentials
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or "AWS S3 (AWS_ENDPOINT_URL is not set)"
    where = f"{setting}={url} at {endpoint}"
    try:
        boto3.client("s3").head_bucket(Bucket=bucket)
    except exceptions.NoCredentialsError:
        raise StageError(
            f"{where}: no credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
            "AWS_PROFILE"
        ) from None
    except (exceptions.EndpointConnectionError, exceptions.ConnectTimeoutError) as exc:
        raise StageError(f"{where}: the store does not answer ({exc})") from None
    except exceptions.ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in {"404", "NoSuchBucket"}:
            raise StageError(
                f"{where}: there is no bucket {bucket!r}; create it (`aws s3 mb s3://{bucket}`)"
                " or point the setting at one that exists"
            ) from None
        if code in {"403", "AccessDenied"}:
            raise StageError(
                f"{where}: access denied; these credentials may not use bucket {bucket!r} "
                "(docs/team.md lists what the policy must allow)"
            ) from None
        raise StageError(f"{where}: {exc}") from None
    except exceptions.BotoCoreError as exc:
        raise StageError(f"{where}: {exc}") from None
