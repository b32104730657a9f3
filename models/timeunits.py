"""Milliseconds in the units event time is measured in; every module takes them from here."""

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
WEEK_MS = 7 * DAY_MS
