"""How often the supervisor (``gateway.workers``) starts a child again that died while
serving: a few times, then the crash loop is the operator's to look at."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

# Restarts allowed within RESTART_WINDOW_SECONDS before the supervisor gives up: enough to
# ride out a rare crash, few enough that a crash loop stops the bank within a minute.
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0


@dataclass
class RestartBudget:
    """At most ``limit`` restarts within any ``window_seconds``."""

    limit: int = MAX_RESTARTS
    window_seconds: float = RESTART_WINDOW_SECONDS
    clock: Callable[[], float] = time.monotonic
    _recent: deque[float] = field(default_factory=deque)

    def take(self) -> bool:
        """Spend one restart if the budget allows it now."""
        now = self.clock()
        while self._recent and now - self._recent[0] >= self.window_seconds:
            self._recent.popleft()
        if len(self._recent) >= self.limit:
            return False
        self._recent.append(now)
        return True
