"""Provider quotas: a provider's own cap on an action per account over a fixed calendar window.

seqrun's limits are per sender-local day (`runner.engine.limits`). Some providers count differently:
ConnectSafely allows 90 invitations a week per LinkedIn account, the week starting Monday 00:00
UTC. A `Quota` says what a provider counts, how many, and over which window, so that `seqrun
status`, simulate's report and its audit show it as what it is (a weekly limit, not a daily one).
The driver itself keeps the promise: it refuses an action over the quota with LIMIT_REACHED and
the window's end as `retry_at`, before any request (see the ConnectSafely driver).

The registry (`runner.providers.QUOTAS`) lists only quotas seqrun can count from its own audit log:
every performed action of the kind counts.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

UTC = dt.UTC
PERIODS = ("day", "week")


@dataclass(frozen=True, slots=True)
class Quota:
    action: str  # seqrun's action name: connect, message, …
    limit: int
    period: str  # "day" (from 00:00 UTC) or "week" (from Monday 00:00 UTC)

    def __post_init__(self) -> None:
        if self.period not in PERIODS:
            raise ValueError(f"a quota period is one of {', '.join(PERIODS)}, not {self.period!r}")

    def window(self, at: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        """The window holding `at`: [start, end) in UTC."""
        day = at.astimezone(UTC).date()
        if self.period == "week":
            day -= dt.timedelta(days=day.weekday())
        start = dt.datetime.combine(day, dt.time(), UTC)
        return start, start + dt.timedelta(days=7 if self.period == "week" else 1)

    def describe(self) -> str:
        """`90 a week (from Monday 00:00 UTC)`."""
        when = "from Monday 00:00 UTC" if self.period == "week" else "from 00:00 UTC"
        return f"{self.limit} a {self.period} ({when})"


def by_window(quota: Quota, times: Iterable[dt.datetime]) -> dict[dt.datetime, int]:
    """How many of `times` fall in each of the quota's windows, by window start (in time order)."""
    counts: dict[dt.datetime, int] = {}
    for at in times:
        start = quota.window(at)[0]
        counts[start] = counts.get(start, 0) + 1
    return dict(sorted(counts.items()))
