"""When cron triggers are due: cronsim's ticks in IANA zones, as UTC instants, across daylight
saving changes (Europe/Berlin's 2026 spring-forward on March 29 at 02:00 and fall-back on
October 25 at 03:00), in a half-hour zone, with seconds, within a start/end window; and the
claim's decision of what to run and what is missed."""

from datetime import UTC, datetime, timedelta

import pytest

from resolvers.errors import BadUserInput
from triggers.cron.schedule import Schedule
from triggers.cron.scheduler import MAX_MISSED_RECORDED, decide


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def ticks(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    found = []
    for tick in schedule.ticks_after(after):
        found.append(tick)
        if len(found) == count:
            break
    return found


def test_a_time_skipped_by_spring_forward_runs_once_right_after_the_jump():
    daily = Schedule.checked("30 2 * * *", "Europe/Berlin")

    assert ticks(daily, utc(2026, 3, 27, 12), 3) == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 0),  # 02:30 does not exist: 03:00 CEST
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]


def test_a_time_repeated_by_fall_back_runs_once_at_its_first_pass():
    daily = Schedule.checked("30 2 * * *", "Europe/Berlin")

    assert ticks(daily, utc(2026, 10, 24, 12), 2) == [
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST; 02:30 CET (01:30 UTC) does not run
        utc(2026, 10, 26, 1, 30),  # 02:30 CET
    ]
    # Asked from inside the repeated hour, after its first pass: time only moves on.
    assert daily.next_after(utc(2026, 10, 25, 1, 0)) == utc(2026, 10, 26, 1, 30)
    assert daily.last_before(utc(2026, 10, 25, 1, 0), utc(2026, 10, 1)) == utc(2026, 10, 25, 0, 30)


def test_wildcard_hours_follow_real_time_through_both_passes_of_the_repeated_hour():
    half_hourly = Schedule.checked("*/30 * * * *", "Europe/Berlin")

    assert ticks(half_hourly, utc(2026, 10, 24, 23, 59), 5) == [
        utc(2026, 10, 25, 0, 0),  # 02:00 CEST
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST
        utc(2026, 10, 25, 1, 0),  # 02:00 CET
        utc(2026, 10, 25, 1, 30),  # 02:30 CET
        utc(2026, 10, 25, 2, 0),  # 03:00 CET
    ]


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("Asia/Kolkata", utc(2026, 6, 1, 3, 30)),  # 09:00 IST, UTC+05:30
        ("Australia/Adelaide", utc(2026, 5, 31, 23, 30)),  # 09:00 ACST, UTC+09:30 in June
        ("Australia/Adelaide", utc(2026, 1, 1, 22, 30)),  # 09:00 ACDT, UTC+10:30 in January
        ("UTC", utc(2026, 6, 1, 9, 0)),
    ],
)
def test_half_hour_zones_shift_the_utc_instant_by_their_offset(zone, expected):
    morning = Schedule.checked("0 9 * * *", zone)

    assert morning.next_after(expected - timedelta(hours=12)) == expected


def test_six_fields_put_seconds_first():
    every_fifteen_seconds = Schedule.checked("*/15 * * * * *")

    assert ticks(every_fifteen_seconds, utc(2026, 1, 1, 0, 0, 5), 4) == [
        utc(2026, 1, 1, 0, 0, 15),
        utc(2026, 1, 1, 0, 0, 30),
        utc(2026, 1, 1, 0, 0, 45),
        utc(2026, 1, 1, 0, 1, 0),
    ]
    # Strictly after: an instant on a tick, or a millisecond past one, gets the next tick.
    assert every_fifteen_seconds.next_after(utc(2026, 1, 1, 0, 0, 15)) == utc(2026, 1, 1, 0, 0, 30)
    moment = utc(2026, 1, 1, 0, 0, 15) + timedelta(milliseconds=1)
    assert every_fifteen_seconds.next_after(moment) == utc(2026, 1, 1, 0, 0, 30)


def test_the_window_starts_at_start_at_inclusive_and_ends_at_end_at_inclusive():
    hourly = Schedule.checked("0 * * * *", "UTC", utc(2026, 2, 1, 10), utc(2026, 2, 1, 12))

    assert list(hourly.ticks_after(utc(2026, 1, 1))) == [
        utc(2026, 2, 1, 10),
        utc(2026, 2, 1, 11),
        utc(2026, 2, 1, 12),
    ]
    assert hourly.next_after(utc(2026, 2, 1, 12)) is None
    # Naive datetimes are UTC.
    naive = Schedule.checked("0 * * * *", "UTC", datetime(2026, 2, 1, 10), None)
    assert naive.next_after(utc(2026, 1, 1)) == utc(2026, 2, 1, 10)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        (("* * * *",), "cron"),
        (("* * * * * * *",), "cron"),
        (("61 * * * *",), "cron"),
        (("* * 31 2 *",), "cron"),  # never: February has no 31st
        (("every minute",), "cron"),
        (("* * * * *", "Mars/Olympus_Mons"), "timezone"),
        (("* * * * *", "../etc/passwd"), "timezone"),
        (("* * * * *", "UTC", utc(2026, 2, 2), utc(2026, 2, 1)), "endAt"),
    ],
)
def test_bad_schedules_name_their_field(arguments, field):
    with pytest.raises(BadUserInput) as raised:
        Schedule.checked(*arguments)

    assert raised.value.extensions["field"] == field


def _trigger(cron: str, next_run_at: datetime, tolerance_s: int, policy: str, **window) -> dict:
    return {
        "cron": cron,
        "timezone": "UTC",
        "startAt": window.get("start_at"),
        "endAt": window.get("end_at"),
        "nextRunAt": next_run_at,
        "toleranceS": tolerance_s,
        "missedPolicy": policy,
    }


def _actions(entries: list[dict]) -> list[tuple[datetime, str]]:
    return [(entry["scheduledAt"], entry["action"]) for entry in entries]


def test_a_claim_on_time_runs_the_tick_and_schedules_the_next():
    moment = utc(2026, 1, 1, 12, 0, 0) + timedelta(milliseconds=150)
    entries, next_run_at = decide(_trigger("* * * * * *", utc(2026, 1, 1, 12), 60, "skip"), moment)

    assert _actions(entries) == [(utc(2026, 1, 1, 12), "run")]
    assert entries[0]["latenessMs"] == 150
    assert next_run_at == utc(2026, 1, 1, 12, 0, 1)


def test_after_a_downtime_skip_records_every_late_tick_missed_and_runs_the_on_time_ones():
    moment = utc(2026, 1, 1, 12, 0, 30)
    trigger = _trigger("*/10 * * * * *", utc(2026, 1, 1, 11, 59, 0), 15, "skip")

    entries, next_run_at = decide(trigger, moment)

    late = [utc(2026, 1, 1, 11, 59, s) for s in (0, 10, 20, 30, 40, 50)]
    late += [utc(2026, 1, 1, 12, 0, 0), utc(2026, 1, 1, 12, 0, 10)]
    assert _actions(entries) == [
        *((tick, "missed") for tick in late),
        (utc(2026, 1, 1, 12, 0, 20), "run"),
        (utc(2026, 1, 1, 12, 0, 30), "run"),
    ]
    assert next_run_at == utc(2026, 1, 1, 12, 0, 40)


def test_after_a_downtime_run_once_runs_the_latest_missed_tick_once():
    moment = utc(2026, 1, 1, 17, 30)
    trigger = _trigger("0 * * * *", utc(2026, 1, 1, 12), 60, "runOnce")

    entries, next_run_at = decide(trigger, moment)

    assert _actions(entries) == [
        *((utc(2026, 1, 1, hour), "missed") for hour in (12, 13, 14, 15, 16)),
        (utc(2026, 1, 1, 17), "run"),
    ]
    assert next_run_at == utc(2026, 1, 1, 18)


def test_a_long_downtime_records_a_bounded_number_of_missed_ticks():
    moment = utc(2026, 1, 2, 12, 0, 30)
    trigger = _trigger("* * * * *", utc(2026, 1, 1, 12), 10, "runOnce")

    entries, next_run_at = decide(trigger, moment)

    missed = [entry for entry in entries if entry["action"] == "missed"]
    assert len(missed) == MAX_MISSED_RECORDED + 1  # the last one stands for the rest
    assert [entry["scheduledAt"] for entry in missed[:3]] == [
        utc(2026, 1, 1, 12, 0),
        utc(2026, 1, 1, 12, 1),
        utc(2026, 1, 1, 12, 2),
    ]
    assert "not listed" in missed[-1]["reason"]
    assert _actions(entries)[-1] == (utc(2026, 1, 2, 12), "run")
    assert next_run_at == utc(2026, 1, 2, 12, 1)


def test_a_claim_past_end_at_leaves_nothing_to_run_next():
    moment = utc(2026, 1, 1, 12, 0, 5)
    trigger = _trigger(
        "* * * * * *", utc(2026, 1, 1, 12), 60, "skip", end_at=utc(2026, 1, 1, 12, 0, 2)
    )

    entries, next_run_at = decide(trigger, moment)

    assert [tick for tick, _ in _actions(entries)] == [utc(2026, 1, 1, 12, 0, s) for s in (0, 1, 2)]
    assert next_run_at is None
