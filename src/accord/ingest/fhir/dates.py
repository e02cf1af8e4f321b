"""FHIR ``date``, ``dateTime`` and ``instant`` values as CDM dates, a column at a time.

FHIR allows partial dates ("2019", "2019-03"); the CDM needs a day, so a partial date
means the first day of its year or month. A time of day keeps its local wall-clock value
and drops the offset: the CDM's datetimes carry no zone, and converting to UTC would move
an evening admission to the next day.

>>> parsed = parse_fhir_dates(pa.array(["2019", "2019-03-04T23:30:00-05:00", "soon", None]))
>>> parsed.date.to_pylist()
[datetime.date(2019, 1, 1), datetime.date(2019, 3, 4), None, None]
>>> parsed.invalid.to_pylist()
[False, False, True, False]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

# Lenient where real servers are: seconds may be missing from a time, and so may the
# offset that the specification requires after one.
_FHIR_DATE: Final = (
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?P<fraction>\.\d+)?)?"
    r"(?:Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


@dataclass(frozen=True)
class ParsedDates:
    """Parsed values, aligned with the input.

    ``date`` is the day (null for a null or invalid input); ``datetime`` is set only where
    the input had a time of day; ``invalid`` marks inputs that were present but are not a
    FHIR date, such as "soon" or "2019-02-30".
    """

    date: pa.Array
    datetime: pa.Array
    invalid: pa.Array


def parse_fhir_dates(values: pa.Array) -> ParsedDates:
    """Parse a string array of FHIR dates, dateTimes or instants (nulls allowed)."""
    # Exports repeat timestamps (every resource of an encounter shares its start), so
    # each distinct value is parsed once.
    encoded = pc.dictionary_encode(values.cast(pa.string()))
    distinct = _parse_distinct(encoded.dictionary)
    return ParsedDates(
        date=distinct.date.take(encoded.indices),
        datetime=distinct.datetime.take(encoded.indices),
        invalid=pc.fill_null(distinct.invalid.take(encoded.indices), False),
    )


def _parse_distinct(values: pa.Array) -> ParsedDates:
    text = pc.utf8_trim_whitespace(values)
    parts = pc.extract_regex(text, _FHIR_DATE)

    def part(name: str, default: str) -> pa.Array:
        value = pc.struct_field(parts, name)
        return pc.if_else(pc.equal(value, ""), default, value)

    joined = pc.binary_join_element_wise(
        part("year", "0000"),
        "-",
        part("month", "01"),
        "-",
        part("day", "01"),
        "T",
        part("hour", "00"),
        ":",
        part("minute", "00"),
        ":",
        part("second", "00"),
        "",
    )
    stamp = pc.strptime(joined, format="%Y-%m-%dT%H:%M:%S", unit="us", error_is_null=True)
    # strptime rolls impossible values over (February 30th becomes March 2nd); printing
    # the result back and comparing catches them.
    printed = pc.strftime(stamp, format="%Y-%m-%dT%H:%M")
    rolled_over = pc.not_equal(printed, pc.utf8_slice_codeunits(joined, 0, 16))
    stamp = pc.if_else(pc.fill_null(rolled_over, True), pa.scalar(None, stamp.type), stamp)
    fraction = pc.struct_field(parts, "fraction")
    micros = pc.utf8_slice_codeunits(pc.binary_join_element_wise(fraction, "0000000", ""), 1, 7)
    micros = pc.if_else(pc.equal(fraction, ""), "0", micros).cast(pa.int64())
    stamp = pc.add(stamp, micros.cast(pa.duration("us")))

    invalid = pc.and_(pc.is_valid(values), pc.is_null(stamp))
    has_time = pc.not_equal(pc.struct_field(parts, "hour"), "")
    no_datetime = pa.nulls(len(values), pa.timestamp("us"))
    return ParsedDates(
        date=stamp.cast(pa.date32()),
        datetime=pc.if_else(pc.fill_null(has_time, False), stamp, no_datetime),
        invalid=pc.fill_null(invalid, False),
    )
