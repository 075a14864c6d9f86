"""Raw data under an S3 prefix, read through dagster-aws's S3Resource (boto3).

Imported only where the raw data is in S3 (``definitions.build_source``, the Redshift binding,
``sparkify-sql``), so a run on a local folder does not import boto3 and dagster-aws.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import boto3

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
    LOG_PREFIX,
    SONG_PREFIX,
    ListPage,
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

    def location_uri(self, prefix: str) -> str:
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

    def list_pages(self, prefix: str, start_after: str | None = None) -> Iterator[ListPage]:
        """ListObjectsV2 from ``start_after`` on (StartAfter), one request per page of up to 1,000 keys."""
        bucket, root = self.bucket_and_prefix
        kwargs = {"Bucket": bucket, "Prefix": root + prefix}
        if start_after:
            kwargs["StartAfter"] = root + start_after
        pages = self.client().get_paginator("list_objects_v2").paginate(**kwargs)
        try:
            for page in pages:
                contents = page.get("Contents", [])
                yield ListPage(
                    [RawFile(o["Key"][len(root):], o["Size"], o["ETag"].strip('"'))
                     for o in contents if o["Key"].endswith(".json")],
                    contents[-1]["Key"][len(root):] if contents else None,
                    bool(page.get("IsTruncated")),
                )
        except (ClientError, BotoCoreError) as exc:
            raise s3_error("list", f"s3://{bucket}/{root}{prefix}", exc) from exc

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




class Notified(NamedTuple):
    """What the queued S3 event notifications name: log keys created or removed, whether a song file was,
    and how many SQS requests receiving them took."""

    logs: list[str]
    songs: bool
    requests: int


class S3EventQueue:
    """S3 event notifications (ObjectCreated:*, ObjectRemoved:*) delivered by the bucket to an SQS queue.

    ``receive`` drains the queue (ReceiveMessage, 10 messages a call, at most ``max_calls`` calls a tick)
    and keeps only objects under the data root; ``acknowledge`` deletes what was received, once the tick
    has used it. The SQS client is built like the S3 one (region, profile, AWS_ENDPOINT_URL).
    """

    def __init__(self, queue_url: str, source: S3Source, client: Any = None, max_calls: int = 10):
        self.queue_url = queue_url
        self.source = source
        self.max_calls = max_calls
        self._client = client
        self._handles: list[str] = []

    @classmethod
    def for_source(cls, queue_url: str, source: RawDataSource) -> S3EventQueue:
        """The queue for an S3 source (the settings check refuses a queue with any other source)."""
        if not isinstance(source, S3Source):
            raise SourceError(f"S3 event notifications need raw data in S3, not {source.describe()}")
        return cls(queue_url, source)

    def client(self) -> Any:
        if self._client is None:
            s3 = self.source.s3
            session = boto3.session.Session(
                profile_name=s3.profile_name, region_name=s3.region_name, aws_access_key_id=s3.aws_access_key_id,
                aws_secret_access_key=s3.aws_secret_access_key, aws_session_token=s3.aws_session_token,
            )
            self._client = session.client("sqs", endpoint_url=s3.endpoint_url)
        return self._client

    def receive(self) -> Notified:
        """Every notification waiting (up to max_calls × 10), reduced to what the sensor needs."""
        bucket, root = self.source.bucket_and_prefix
        logs, songs, calls = [], False, 0
        try:
            while calls < self.max_calls:
                # A one-second long poll first (short polls sample only some SQS hosts), then drain.
                resp = self.client().receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                                     WaitTimeSeconds=1 if calls == 0 else 0)
                calls += 1
                messages = resp.get("Messages", [])
                for message in messages:
                    self._handles.append(message["ReceiptHandle"])
                    for key in _notified_keys(message.get("Body", ""), bucket):
                        if not key.startswith(root) or not key.endswith(".json"):
                            continue
                        key = key[len(root):]
                        if key.startswith(LOG_PREFIX):
                            logs.append(key)
                        elif key.startswith(SONG_PREFIX):
                            songs = True
                if len(messages) < 10:
                    break
        except (ClientError, BotoCoreError) as exc:
            raise s3_error("receive S3 event notifications from", self.queue_url, exc) from exc
        return Notified(logs, songs, calls)

    def acknowledge(self) -> None:
        """Delete the messages received (DeleteMessageBatch, 10 a call)."""
        handles, self._handles = self._handles, []
        try:
            for i in range(0, len(handles), 10):
                self.client().delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(n), "ReceiptHandle": h} for n, h in enumerate(handles[i:i + 10])],
                )
        except (ClientError, BotoCoreError) as exc:
            raise s3_error("delete S3 event notifications from", self.queue_url, exc) from exc


def _notified_keys(body: str, bucket: str) -> list[str]:
    """The object keys of a notification's S3 records in ``bucket`` (keys arrive URL-encoded); none for
    anything else (the s3:TestEvent sent when notifications are set up, a message from elsewhere)."""
    try:
        records = json.loads(body).get("Records") or []
    except (ValueError, AttributeError):
        return []
    keys = []
    for record in records:
        try:
            if record["s3"]["bucket"]["name"] == bucket and record["eventName"].startswith(("ObjectCreated", "ObjectRemoved")):
                keys.append(urllib.parse.unquote_plus(record["s3"]["object"]["key"]))
        except (KeyError, TypeError):
            continue
    return keys
