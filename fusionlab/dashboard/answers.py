"""The answers a shared model has given, remembered: thirty students clicking the same example cost one call.

A predictor of the dashboard is shared by every session of a Streamlit server and its model never changes (a
retrained checkpoint gets a new predictor), so an answer stays right for as long as the predictor lives. One lock
serialises the model calls too: fast tokenizers refuse concurrent use, and CPU torch already spreads one forward
pass over every core.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")

ANSWER_CACHE_SIZE = 256
"""Answers remembered per predictor (inputs × adapter selections); the least recently used go first."""


class AnswerCache(Generic[T]):
    """A lock and a bounded least-recently-used map from a checked input to the model's answer."""

    def __init__(self, size: int = ANSWER_CACHE_SIZE) -> None:
        self.lock = threading.Lock()
        self._answers: OrderedDict[Hashable, T] = OrderedDict()
        self._size = size
        self.calls = 0
        """How many answers were computed (answers served from the cache are not counted)."""

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The answer for ``key``, computed under the lock the first time."""
        with self.lock:
            if key in self._answers:
                self._answers.move_to_end(key)
                return self._answers[key]
            answer = compute()
            self.calls += 1
            self._answers[key] = answer
            if len(self._answers) > self._size:
                self._answers.popitem(last=False)
            return answer
