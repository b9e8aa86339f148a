"""When a cron trigger is due: its expression read by cronsim in its IANA time zone.

cronsim takes 5 fields, or 6 with seconds first, and follows Debian cron across daylight
saving changes for 5-field expressions naming a minute and an hour: a time skipped by a
spring-forward runs once, right after the jump; a time that occurs twice at a fall-back runs
once, at its first occurrence. Expressions with a wildcard minute or hour (and all 6-field
ones) follow real time, so their ticks in a repeated hour occur in both passes. Every instant
here is UTC on the way in and out: only cronsim sees local time.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from resolvers.errors import BadUserInput

JUST_BEFORE = timedelta(milliseconds=1)
"""Ticks are whole seconds: the next tick after `t - JUST_BEFORE` is `t` itself if it is one."""


def time_zone(name: str) -> ZoneInfo:
    """The IANA zone of that name (BAD_USER_INPUT, field `timezone`, otherwise)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadUserInput(f"Unknown time zone {name!r}", field="timezone") from exc


def checked_cron(expression: str) -> str:
    """The expression, normalized to single spaces, if cronsim reads it (BAD_USER_INPUT, field
    `cron`, otherwise): 5 fields, or 6 with seconds first."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise BadUserInput(
            f"cron must have 5 fields (or 6, seconds first), not {len(fields)}", field="cron"
        )
    normalized = " ".join(fields)
    try:
        CronSim(normalized, datetime.now(UTC))
    except CronSimError as exc:
        raise BadUserInput(f"Invalid cron expression {expression!r}: {exc}", field="cron") from exc
    return normalized


@dataclass(frozen=True)
class Schedule:
    """A cron expression in a time zone, within an optional [start_at, end_at] window."""

    cron: str
    timezone: str = "UTC"
    start_at: datetime | None = None
    end_at: datetime | None = None

    @classmethod
    def checked(
        cls,
        cron: str,
        timezone: str = "UTC",
        start_at: datetime | None = None,
        end_at: datetime | None = None,
    ) -> "Schedule":
        """A schedule whose every part is valid; BAD_USER_INPUT naming the field otherwise."""
        time_zone(timezone)
        if start_at is not None and end_at is not None and end_at < start_at:
            raise BadUserInput("endAt must not be before startAt", field="endAt")
        return cls(checked_cron(cron), timezone, _utc(start_at), _utc(end_at))

    def ticks_after(self, instant: datetime) -> Iterator[datetime]:
        """The ticks strictly after `instant`, in order, until `end_at` (UTC)."""
        after = _utc(instant)
        if self.start_at is not None and self.start_at - JUST_BEFORE > after:
            after = self.start_at - JUST_BEFORE
        local = after.astimezone(time_zone(self.timezone))
        last = after
        try:
            for tick in CronSim(self.cron, local):
                moment = tick.astimezone(UTC)
                if self.end_at is not None and moment > self.end_at:
                    return
                # A fixed time in a repeated hour maps back to its first pass, which may lie
                # before `after` when `after` is in the second pass: time only moves on.
                if moment > last:
                    last = moment
                    yield moment
        except StopIteration:  # cronsim found no tick within 50 years
            return

    def next_after(self, instant: datetime) -> datetime | None:
        """The first tick strictly after `instant`; None when there is none (past `end_at`)."""
        return next(self.ticks_after(instant), None)

    def ticks_between(self, first: datetime, until: datetime, limit: int) -> list[datetime]:
        """Up to `limit` ticks in [first, until], in order."""
        found: list[datetime] = []
        if limit <= 0:
            return found
        for tick in self.ticks_after(first - JUST_BEFORE):
            if tick > until:
                break
            found.append(tick)
            if len(found) == limit:
                break
        return found

    def last_before(self, instant: datetime, not_before: datetime) -> datetime | None:
        """The latest tick in [not_before, instant). A long downtime may hold millions of
        ticks, so cronsim steps back first; in reverse it may land before a fixed time's first
        pass in a repeated hour, so the forward walk goes on from there (at most a few dozen
        ticks: the rest of that hour)."""
        zone = time_zone(self.timezone)
        try:
            stepped_back = next(CronSim(self.cron, _utc(instant).astimezone(zone), True))
        except StopIteration:
            stepped_back = not_before
        latest = None
        start = max(stepped_back.astimezone(UTC) - timedelta(hours=1), not_before)
        for tick in self.ticks_after(start - JUST_BEFORE):
            if tick >= instant:
                break
            latest = tick
        return latest


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
