"""Fault injection for tests and drills: the first `sandbox_fail_first_calls` confirm calls of each payment fail.

Each kind fails at a different moment, because each tests a different promise of the saga:
- "429" refuses before any work, as a rate limit does: the retry simply tries again;
- "500" loses the answer after the intent was made: the retry must find that intent, not make a second;
- "timeout" answers after the activity's start_to_close: same, seen from a timed-out activity.
"""

from __future__ import annotations

import asyncio

from activities.providers.base import ProviderUnavailable
from paysaga.settings import Settings

# Long enough to outlive any activity timeout; the cancelled activity abandons the sleep.
_TIMEOUT_SLEEP_SECONDS = 3600.0


class FaultInjector:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._calls: dict[str, int] = {}  # per process, as a flaky network path would be

    def draw(self, key: str) -> str | None:
        """The fault this call of `key` suffers, if any (counts the call)."""
        seen = self._calls.get(key, 0)
        self._calls[key] = seen + 1
        return self._settings.sandbox_fail_kind if seen < self._settings.sandbox_fail_first_calls else None

    @staticmethod
    def before_work(fault: str | None) -> None:
        if fault == "429":
            raise ProviderUnavailable("sandbox: 429 rate limited (injected)")

    @staticmethod
    async def after_work(fault: str | None) -> None:
        if fault == "500":
            raise ProviderUnavailable("sandbox: 500 after creating the intent (injected)")
        if fault == "timeout":
            await asyncio.sleep(_TIMEOUT_SLEEP_SECONDS)
