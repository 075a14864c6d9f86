"""Small helpers every layer shares: masking secrets, digests of file versions, the AWS region."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping

MASK = "***"


def scrub(text: str, *secrets: str | None) -> str:
    """``text`` with every non-empty secret replaced by a mask (for messages that could echo one)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text


def digest(pairs: Mapping[str, object]) -> str:
    """One stable version for a set of key -> value pairs: changes when any key or value changes."""
    return hashlib.sha256(json.dumps(sorted(pairs.items())).encode()).hexdigest()


def env_region(env: Mapping[str, str] = os.environ) -> str | None:
    """The AWS region the environment names (AWS_REGION, else AWS_DEFAULT_REGION), else None."""
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None


def whole_number(name: str, raw: str, minimum: int, error: type[Exception]) -> int:
    """The setting ``name``'s text ``raw`` as an int of at least ``minimum``; else ``error`` with one
    line saying what is wrong (a configuration mistake is a message, never a traceback)."""
    try:
        value = int(raw)
    except ValueError:
        raise error(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise error(f"{name} must be {minimum} or more, not {value}")
    return value
