# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""PostgreSQL's TimestampTz on the wire of the replication protocol (microseconds since
2000-01-01 UTC) as an aware UTC datetime: every Begin and Commit message carries one."""

from cpython.datetime cimport datetime_new, import_datetime
from libc.stdint cimport int64_t

from datetime import datetime, timedelta, timezone

import_datetime()

POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
cdef object _UTC = timezone.utc
cdef int64_t _MICROS_PER_DAY = 86_400_000_000
cdef int64_t _DAYS_1970_TO_2000 = 10_957
# datetime's range (years 1 to 9999) as PostgreSQL's microseconds; a value outside it (e.g.
# 'infinity') raises datetime's OverflowError, as the epoch plus a timedelta would
cdef int64_t _MIN_MICROS = (datetime(1, 1, 1, tzinfo=timezone.utc) - POSTGRES_EPOCH) // timedelta(microseconds=1)
cdef int64_t _MAX_MICROS = (datetime.max.replace(tzinfo=timezone.utc) - POSTGRES_EPOCH) // timedelta(microseconds=1)


def pg_timestamp(microseconds: int) -> datetime:
    """PostgreSQL's TimestampTz (microseconds since 2000-01-01 UTC) as an aware UTC datetime."""
    return timestamp(microseconds)


cdef object timestamp(int64_t micros):
    # The calendar fields are computed here (the civil date of a day number, as in H. Hinnant's
    # "chrono-Compatible Low-Level Date Algorithms") rather than by datetime's keyword-parsing
    # timedelta constructor and its normalization, which took ~1 us a message.
    cdef int64_t days, rest, era, day_of_era, year_of_era, day_of_year, shifted_month
    cdef int year, month, day
    if micros < _MIN_MICROS or micros > _MAX_MICROS:
        return POSTGRES_EPOCH + timedelta(microseconds=micros)
    days = micros // _MICROS_PER_DAY  # truncated (cdivision): made a floor below
    rest = micros - days * _MICROS_PER_DAY
    if rest < 0:
        days -= 1
        rest += _MICROS_PER_DAY
    days += _DAYS_1970_TO_2000 + 719_468  # days since 0000-03-01, positive within the range
    era = days // 146_097
    day_of_era = days - era * 146_097
    year_of_era = (day_of_era - day_of_era // 1_460 + day_of_era // 36_524 - day_of_era // 146_096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    shifted_month = (5 * day_of_year + 2) // 153  # 0 is March
    day = <int>(day_of_year - (153 * shifted_month + 2) // 5 + 1)
    month = <int>(shifted_month + 3 if shifted_month < 10 else shifted_month - 9)
    year = <int>(year_of_era + era * 400 + (1 if month <= 2 else 0))
    return datetime_new(year, month, day, <int>(rest // 3_600_000_000), <int>(rest // 60_000_000 % 60),
                        <int>(rest // 1_000_000 % 60), <int>(rest % 1_000_000), _UTC)
