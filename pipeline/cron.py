"""A small parser for 5-field cron expressions (minute hour day-of-month month day-of-week), all in UTC.

Written here rather than adding a dependency: the syntax is tiny and its one subtle rule is kept —
when both day-of-month and day-of-week are restricted (neither starts with ``*``), a day matches if EITHER
matches (Vixie cron).
Supports ``*``, lists ``a,b``, ranges ``a-b``, steps ``*/n`` and ``a-b/n``, month and weekday names
(``jan``, ``mon``), weekday 7 = Sunday, and the macros ``@hourly @daily @midnight @weekly @monthly @yearly @annually``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipeline.errors import ConfigError

_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
# (name, low, high, names)
_FIELDS = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression: the allowed values of each field."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_restricted: bool
    weekday_restricted: bool

    def matches(self, when: datetime) -> bool:
        """Whether the minute containing ``when`` (UTC) is a firing time."""
        when = _utc(when)
        return (
            when.minute in self.minutes
            and when.hour in self.hours
            and when.month in self.months
            and self._day_matches(when)
        )

    def _day_matches(self, when: datetime) -> bool:
        dom = when.day in self.days
        dow = (when.isoweekday() % 7) in self.weekdays
        if self.day_restricted and self.weekday_restricted:
            return dom or dow
        return dom and dow

    def next_after(self, after: datetime) -> datetime:
        """The first firing time strictly after ``after`` (UTC, whole minutes)."""
        t = _utc(after).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t + timedelta(days=366 * 5)
        while t < limit:
            if t.month not in self.months:
                t = _first_of_next_month(t)
                continue
            if not self._day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0)
                continue
            if t.minute not in self.minutes:
                t += timedelta(minutes=1)
                continue
            return t
        raise ConfigError(f"cron expression {self.expression!r} never fires (e.g. 30 February); fix the day/month")


def _utc(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _first_of_next_month(t: datetime) -> datetime:
    year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    return t.replace(year=year, month=month, day=1, hour=0, minute=0)


def _value(text: str, name: str, low: int, high: int, names: dict[str, int], expr: str) -> int:
    key = text.lower()
    if key in names:
        return names[key]
    if not text.isdigit():
        raise ConfigError(f"cron expression {expr!r}: {name} value {text!r} is not a number"
                          + (f" or a name ({', '.join(names)})" if names else ""))
    value = int(text)
    if not low <= value <= high:
        raise ConfigError(f"cron expression {expr!r}: {name} value {value} is outside {low}-{high}")
    return value


def _parse_field(text: str, name: str, low: int, high: int, names: dict[str, int], expr: str) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ConfigError(f"cron expression {expr!r}: empty list item in the {name} field")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ConfigError(f"cron expression {expr!r}: step {step_text!r} in the {name} field must be >= 1")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            start = _value(a, name, low, high, names, expr)
            end = _value(b, name, low, high, names, expr)
            if end < start:
                raise ConfigError(f"cron expression {expr!r}: range {base!r} in the {name} field runs backwards")
        else:
            start = _value(base, name, low, high, names, expr)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return values


def parse_cron(expression: str) -> CronSchedule:
    """Parse a 5-field cron expression (UTC); a ConfigError says which field is wrong and why."""
    expr = expression.strip()
    text = _MACROS.get(expr.lower(), expr)
    parts = text.split()
    if len(parts) != 5:
        raise ConfigError(
            f"cron expression {expression!r} has {len(parts)} fields; expected 5: minute hour day-of-month month "
            "day-of-week (e.g. '30 12 * * *' = every day at 12:30 UTC)"
        )
    fields = [_parse_field(p, *spec, expression) for p, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = {d % 7 for d in fields[4]}
    return CronSchedule(
        expression=expression,
        minutes=frozenset(fields[0]),
        hours=frozenset(fields[1]),
        days=frozenset(fields[2]),
        months=frozenset(fields[3]),
        weekdays=frozenset(weekdays),
        day_restricted=not parts[2].startswith("*"),
        weekday_restricted=not parts[4].startswith("*"),
    )
