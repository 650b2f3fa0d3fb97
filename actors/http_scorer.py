"""A reward scorer backed by a remote HTTP service (protocol: docs/reward_http.md).

Request (POST, application/json), one per batch of at most `batch_size` samples:
    {"prompts": [[{"role": ..., "content": ...}, ...], ...], "responses": ["...", ...], "is_safety": [false, ...]}
Answer (HTTP 200, application/json):
    {"rewards": [0.3, -1.2, ...]}      # one finite number per sample, same order

Connection failures, timeouts, HTTP 429 and 5xx are retried `retries` times with exponential
backoff; other HTTP errors and malformed answers are not (they would fail the same way again).
Every failure raises `RewardServiceError` naming the URL.
"""
from __future__ import annotations

import json
import logging
import math
import numbers
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from actors.scorers import ScoreRequest

log = logging.getLogger(__name__)

BACKOFF_S = 0.2  # first retry waits this long, then doubles
RETRY_STATUS = (429, 500, 502, 503, 504)


class RewardServiceError(RuntimeError):
    """The reward service is down, answered an HTTP error, or answered malformed data."""


class _Retryable(Exception):
    pass


class HttpScorer:
    def __init__(self, url: str, timeout_s: float = 10.0, retries: int = 2, batch_size: int = 32) -> None:
        if not url.startswith(("http://", "https://")):
            raise RewardServiceError(f"reward service URL must start with http:// or https://, got {url!r}")
        if timeout_s <= 0 or retries < 0 or batch_size < 1:
            raise RewardServiceError(f"reward service {url}: need timeout_s > 0, retries >= 0, batch_size >= 1; "
                                     f"got {timeout_s}, {retries}, {batch_size}")
        self.url, self.timeout_s, self.retries, self.batch_size = url, timeout_s, retries, batch_size

    def score(self, requests: Sequence[ScoreRequest]) -> dict[str, np.ndarray]:
        out: list[float] = []
        for start in range(0, len(requests), self.batch_size):
            out += self._score_batch(requests[start:start + self.batch_size])
        return {"reward": np.asarray(out, dtype=np.float64)}

    def _score_batch(self, batch: Sequence[ScoreRequest]) -> list[float]:
        payload = {
            "prompts": [list(r.prompt_messages) for r in batch],
            "responses": [r.response_text for r in batch],
            "is_safety": [bool(r.is_safety) for r in batch],
        }
        body = json.dumps(payload).encode("utf-8")
        attempts = self.retries + 1
        for attempt in range(attempts):
            try:
                return self._parse(self._post(body), len(batch))
            except _Retryable as e:
                if attempt == attempts - 1:
                    raise RewardServiceError(f"reward service {self.url} failed after {attempts} attempt(s): {e}") from e
                wait = BACKOFF_S * 2**attempt
                log.warning("reward service %s: %s; retrying in %.1fs", self.url, e, wait)
                time.sleep(wait)
        raise AssertionError("unreachable")

    def _post(self, body: bytes) -> bytes:
        req = urllib.request.Request(
            self.url, data=body, method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read()[:200].decode("utf-8", "replace")
            if e.code in RETRY_STATUS:
                raise _Retryable(f"HTTP {e.code} {e.reason}: {detail}") from e
            raise RewardServiceError(f"reward service {self.url} answered HTTP {e.code} {e.reason}: {detail}") from e
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise _Retryable(f"unreachable ({reason})") from e

    def _parse(self, raw: bytes, n: int) -> list[float]:
        bad = f"reward service {self.url} answered malformed data"
        try:
            data: Any = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RewardServiceError(f"{bad}: not JSON ({e}); body starts {raw[:80]!r}") from e
        if not isinstance(data, dict) or "rewards" not in data:
            raise RewardServiceError(f"{bad}: expected an object with key 'rewards', got {str(data)[:80]}")
        rewards = data["rewards"]
        if not isinstance(rewards, list) or len(rewards) != n:
            got = f"{len(rewards)} values" if isinstance(rewards, list) else type(rewards).__name__
            raise RewardServiceError(f"{bad}: 'rewards' must be a list of {n} numbers, got {got}")
        for i, v in enumerate(rewards):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise RewardServiceError(f"{bad}: rewards[{i}] is {v!r}, expected a finite number")
        return [float(v) for v in rewards]
