"""An in-memory S3 bucket that counts requests: ListObjectsV2 as S3 pages it (key order, 1,000 keys a page,
Prefix, StartAfter, IsTruncated), for sensor tests and benchmarks/sensor_cost.py at a million keys, where
moto would take longer to fill than to measure."""

from __future__ import annotations

import bisect
import hashlib
from collections import Counter
from contextlib import contextmanager
from unittest import mock

from dagster_aws.s3 import S3Resource

from sparkify_dagster.source_s3 import S3Source

PAGE = 1000


class CountingS3:
    """One bucket's objects (key -> ETag) and a count of the requests made to it, by operation."""

    def __init__(self, bucket: str = "bucket"):
        self.bucket = bucket
        self.objects: dict[str, str] = {}
        self._sorted: list[str] | None = None
        self.requests: Counter = Counter()

    # --- writing (not counted: these are the uploads the sensor watches) -------------------------

    def put(self, key: str, body: bytes = b"{}") -> None:
        if key not in self.objects:
            self._sorted = None
        self.objects[key] = hashlib.md5(body).hexdigest()

    def put_many(self, keys, etag: str = "0" * 32) -> None:
        for key in keys:
            self.objects[key] = etag
        self._sorted = None

    def delete(self, key: str) -> None:
        del self.objects[key]
        self._sorted = None

    # --- the boto3 client surface S3Source uses ---------------------------------------------------

    def _keys(self) -> list[str]:
        if self._sorted is None:
            self._sorted = sorted(self.objects)
        return self._sorted

    def list_objects_v2(self, Bucket, Prefix="", StartAfter="", MaxKeys=PAGE, ContinuationToken=None):
        assert Bucket == self.bucket, Bucket
        self.requests["ListObjectsV2"] += 1
        keys = self._keys()
        after = ContinuationToken or StartAfter
        i = bisect.bisect_right(keys, after) if after else bisect.bisect_left(keys, Prefix)
        i = max(i, bisect.bisect_left(keys, Prefix))
        page = []
        while i < len(keys) and len(page) < MaxKeys and keys[i].startswith(Prefix):
            page.append(keys[i])
            i += 1
        truncated = i < len(keys) and keys[i].startswith(Prefix)
        resp = {"IsTruncated": truncated, "KeyCount": len(page),
                "Contents": [{"Key": k, "Size": 2, "ETag": f'"{self.objects[k]}"'} for k in page]}
        if truncated:
            resp["NextContinuationToken"] = page[-1]
        if not page:
            del resp["Contents"]
        return resp

    def get_paginator(self, name):
        assert name == "list_objects_v2"
        return self

    def paginate(self, **kwargs):
        token = None
        while True:
            resp = self.list_objects_v2(**kwargs, **({"ContinuationToken": token} if token else {}))
            yield resp
            if not resp["IsTruncated"]:
                return
            token = resp["NextContinuationToken"]


@contextmanager
def s3_source_on(fake: CountingS3, prefix: str = ""):
    """An S3Source reading s3://<fake bucket>/<prefix> whose client is the fake (the real S3Source code)."""
    uri = f"s3://{fake.bucket}/{prefix}".rstrip("/")
    with mock.patch.object(S3Source, "client", lambda self: fake):
        yield S3Source(uri=uri, s3=S3Resource())
