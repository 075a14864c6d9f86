"""Raw data under an S3 prefix, read through dagster-aws's S3Resource (boto3).

Imported only where the raw data is in S3 (``definitions.build_source``, the Redshift binding,
``sparkify-sql``), so a run on a local folder does not import boto3 and dagster-aws.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError as BotoConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
)
from dagster_aws.s3 import S3Resource

from sparkify_dagster.source import (
    DEFAULT_EVENT_JSONPATHS,
    JSONPATHS_KEY,
    RawDataSource,
    RawFile,
    SourceError,
    parse_jsonpaths,
    split_s3_uri,
)

# S3 error codes, grouped by what the user should do about them.
_GONE = {"NoSuchKey", "404", "NotFound"}
_DENIED = {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "InvalidAccessKeyId",
           "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "AccountProblem"}
# Reading a response body again after the connection dropped mid-body: botocore retries (with
# backoff, standard mode) every request that fails, but not the reading of a body it returned.
BODY_READ_ATTEMPTS = 3
BODY_RETRY_BASE_SECONDS = 0.2


def s3_error(action: str, uri: str, exc: Exception) -> SourceError:
    """One clear sentence for an S3 failure, naming the object (retries are botocore's, already spent)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        code, message = str(error.get("Code") or "unknown error"), error.get("Message") or ""
        status, attempts = meta.get("HTTPStatusCode"), meta.get("RetryAttempts", 0) + 1
        detail = f"{code}{f' (HTTP {status})' if status else ''}{f': {message}' if message else ''}"
        if code in _GONE:
            return SourceError(
                f"cannot {action} {uri}: the object no longer exists (it was listed, then deleted or renamed "
                f"before it could be read; {detail}). Run again to load the objects as they are now."
            )
        if code == "NoSuchBucket":
            return SourceError(f"cannot {action} {uri}: the bucket does not exist ({detail}). Check SPARKIFY_DATA_URI.")
        if code in _DENIED:
            return SourceError(
                f"cannot {action} {uri}: access denied ({detail}). Check the AWS credentials and that they "
                f"allow s3:ListBucket and s3:GetObject on this prefix."
            )
        if (status or 0) >= 500 or code in ("SlowDown", "Throttling", "RequestTimeout", "ServiceUnavailable"):
            return SourceError(
                f"cannot {action} {uri}: S3 kept failing after {attempts} attempt{'s' * (attempts != 1)} with "
                f"backoff ({detail}). It is a fault on the S3 side or throttling; run again later."
            )
        return SourceError(f"cannot {action} {uri}: {detail}")
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return SourceError(
            f"cannot {action} {uri}: no usable AWS credentials ({exc}). Set AWS_PROFILE, or "
            f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an IAM role."
        )
    if isinstance(exc, BotoConnectionError):
        return SourceError(f"cannot {action} {uri}: S3 cannot be reached ({type(exc).__name__}: {exc})")
    return SourceError(f"cannot {action} {uri}: {type(exc).__name__}: {exc}")


class S3Source(RawDataSource):
    """Raw JSON under an S3 prefix laid out like the Sparkify bucket, read with dagster-aws's S3Resource.

    Every request is retried by botocore with exponential backoff and jitter: dagster-aws builds the
    client with ``Config(retries={"mode": "standard", "max_attempts": s3.max_attempts})`` (default 5
    retries), which covers throttling (503 SlowDown), 5xx and connection errors. A body cut off
    mid-read is read again here (botocore does not retry that). What still fails is raised as a
    ``SourceError`` naming the object.
    """

    uri: str
    s3: S3Resource
    max_concurrency: int = 16

    @property
    def bucket_and_prefix(self) -> tuple[str, str]:
        return split_s3_uri(self.uri)

    def describe(self) -> str:
        return self.uri.rstrip("/")

    def uri(self, prefix: str) -> str:
        return self.s3_uri(prefix)

    def s3_uri(self, key: str) -> str:
        bucket, prefix = self.bucket_and_prefix
        return f"s3://{bucket}/{prefix}{key}"

    def client(self) -> Any:
        """A boto3 S3 client with botocore's standard retry mode (see the class docstring)."""
        try:
            return self.s3.get_client()
        except BotoCoreError as exc:  # e.g. an unknown AWS_PROFILE
            raise s3_error("connect to S3 for", self.describe(), exc) from exc

    def list_files(self, prefix: str) -> list[RawFile]:
        """Every *.json object under a prefix ending with '/' (so log_data/ never matches log_data_old/)."""
        bucket, root = self.bucket_and_prefix
        paginator = self.client().get_paginator("list_objects_v2")
        found = []
        try:
            for page in paginator.paginate(Bucket=bucket, Prefix=root + prefix):
                for obj in page.get("Contents", []):
                    if obj["Key"].endswith(".json"):
                        found.append(RawFile(obj["Key"][len(root):], obj["Size"], obj["ETag"].strip('"')))
        except (ClientError, BotoCoreError) as exc:
            raise s3_error("list", f"s3://{bucket}/{root}{prefix}", exc) from exc
        return sorted(found, key=lambda f: f.key)

    def _get(self, client: Any, key: str) -> bytes:
        bucket, root = self.bucket_and_prefix
        uri = f"s3://{bucket}/{root}{key}"
        for attempt in range(1, BODY_READ_ATTEMPTS + 1):
            try:
                body = client.get_object(Bucket=bucket, Key=root + key)["Body"]
            except (ClientError, BotoCoreError) as exc:
                raise s3_error("read", uri, exc) from exc
            try:
                with body:
                    return body.read()
            except BotoCoreError as exc:  # connection dropped or timed out mid-body
                if attempt == BODY_READ_ATTEMPTS:
                    raise SourceError(
                        f"cannot read {uri}: the download was cut off {attempt} times "
                        f"({type(exc).__name__}: {exc}); run again later."
                    ) from exc
                time.sleep(BODY_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    def read_bytes(self, key: str) -> bytes:
        return self._get(self.client(), key)

    def read_many(self, keys: Sequence[str]) -> list[bytes]:
        """Fetch many small objects concurrently (song_data has one object per song), in order.

        The first object that cannot be read fails the call (Executor.map cancels the fetches not started).
        """
        client = self.client()
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            return list(pool.map(lambda key: self._get(client, key), keys))

    def write_bytes(self, key: str, data: bytes) -> str:
        """Write an object under the data root (COPY manifests); returns its key."""
        bucket, root = self.bucket_and_prefix
        try:
            self.client().put_object(Bucket=bucket, Key=root + key, Body=data)
        except (ClientError, BotoCoreError) as exc:
            raise s3_error("write", f"s3://{bucket}/{root}{key}", exc) from exc
        return key

    def has(self, key: str) -> bool:
        bucket, root = self.bucket_and_prefix
        try:
            resp = self.client().list_objects_v2(Bucket=bucket, Prefix=root + key, MaxKeys=1)
        except (ClientError, BotoCoreError) as exc:
            raise s3_error("list", f"s3://{bucket}/{root}{key}", exc) from exc
        return any(o["Key"] == root + key for o in resp.get("Contents", []))

    def event_jsonpaths(self) -> list[str]:
        return parse_jsonpaths(self.read_bytes(JSONPATHS_KEY)) if self.has(JSONPATHS_KEY) else list(DEFAULT_EVENT_JSONPATHS)


