"""PostgreSQL text values -> Debezium values, for every mapped type, with odd values."""

from __future__ import annotations

import logging
import math
import struct
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from connectors import pgoids, pgtext, pgtypes
from connectors.exceptions import CodecConfigError
from connectors.pgtypes import TypeInfo, codec_for

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def numeric_typmod(precision: int, scale: int) -> int:
    return ((precision << 16) | (scale & 0x7FF)) + 4


def unscaled(data: bytes) -> int:
    return int.from_bytes(data, "big", signed=True)


def from_unscaled(data: bytes, scale: int) -> Decimal:
    """Exact (string construction does not round, unlike Decimal.scaleb)."""
    return Decimal(f"{unscaled(data)}E{-scale}")


# --- integers, floats, booleans, strings -----------------------------------------


@given(st.integers(-(2**15), 2**15 - 1))
@settings(deadline=None)
def test_int2_is_connect_int16(value: int) -> None:
    codec = codec_for(pgoids.INT2)
    assert codec.connect == {"type": "int16"}
    assert codec.avro == {"type": "int", "connect.type": "int16"}
    assert codec.convert(str(value)) == value


@given(st.integers(-(2**63), 2**63 - 1))
@settings(deadline=None)
def test_int8_is_long(value: int) -> None:
    codec = codec_for(pgoids.INT8)
    assert (codec.connect, codec.avro) == ({"type": "int64"}, "long")
    assert codec.convert(str(value)) == value


@pytest.mark.parametrize(("text", "check"), [
    ("NaN", math.isnan),
    ("Infinity", lambda v: v == math.inf),
    ("-Infinity", lambda v: v == -math.inf),
    ("1.7976931348623157e+308", lambda v: v == 1.7976931348623157e308),
    ("-0", lambda v: v == 0 and math.copysign(1, v) < 0),
    ("4.9e-324", lambda v: v == 5e-324),
])
def test_float8_special_values(text: str, check) -> None:
    codec = codec_for(pgoids.FLOAT8)
    assert codec.avro == "double"
    assert check(codec.convert(text))


@given(st.floats(allow_nan=False, width=32))
@settings(deadline=None)
def test_float4_round_trips_repr(value: float) -> None:
    codec = codec_for(pgoids.FLOAT4)
    assert codec.connect == {"type": "float"}
    assert codec.convert(repr(value)) == value


def test_bool() -> None:
    codec = codec_for(pgoids.BOOL)
    assert (codec.convert("t"), codec.convert("f")) == (True, False)


@given(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")))
@settings(deadline=None)
def test_text_varchar_bpchar_are_plain_strings(value: str) -> None:
    for oid in (pgoids.TEXT, pgoids.VARCHAR, pgoids.BPCHAR, pgoids.NAME):
        codec = codec_for(oid)
        assert codec.connect == {"type": "string"}
        assert codec.convert(value) == value
        assert codec.placeholder == "__debezium_unavailable_value"


@pytest.mark.parametrize(("oid", "name"), [
    (pgoids.JSON, "io.debezium.data.Json"),
    (pgoids.JSONB, "io.debezium.data.Json"),
    (pgoids.UUID, "io.debezium.data.Uuid"),
    (pgoids.XML, "io.debezium.data.Xml"),
])
def test_semantic_string_types(oid: int, name: str) -> None:
    codec = codec_for(oid)
    assert codec.connect == {"type": "string", "name": name, "version": 1}
    assert codec.avro == {"type": "string", "connect.version": 1, "connect.name": name}
    assert codec.convert('{"a": [1, "é"]}') == '{"a": [1, "é"]}'


@pytest.mark.parametrize("oid", [pgoids.INET, pgoids.CIDR, pgoids.MACADDR, pgoids.MACADDR8,
                                 pgoids.INT4RANGE, pgoids.TSTZRANGE, pgoids.DATERANGE])
def test_network_and_range_types_are_plain_strings(oid: int) -> None:
    assert codec_for(oid).connect == {"type": "string"}


# --- bytes and bits ------------------------------------------------------------------


@given(st.binary(max_size=100))
@settings(deadline=None)
def test_bytea_hex_round_trip(value: bytes) -> None:
    codec = codec_for(pgoids.BYTEA)
    assert codec.avro == "bytes"
    assert codec.convert("\\x" + value.hex()) == value
    assert codec.placeholder == b"__debezium_unavailable_value"


def test_bytea_escape_format_is_understood() -> None:
    assert pgtext.parse_bytea("a\\000b\\\\c\\377") == b"a\x00b\\c\xff"


def test_bit1_is_boolean_and_longer_bits_are_little_endian_bytes() -> None:
    assert codec_for(pgoids.BIT, 1).convert("1") is True
    bits = codec_for(pgoids.BIT, 10)
    assert bits.connect == {"type": "bytes", "name": "io.debezium.data.Bits", "version": 1,
                            "parameters": {"length": "10"}}
    # b'1000000001' = 513 -> little endian 0x01 0x02
    assert bits.convert("1000000001") == b"\x01\x02"
    varbit = codec_for(pgoids.VARBIT, -1)
    assert varbit.connect["parameters"] == {"length": str(2**31 - 1)}
    assert varbit.convert("101") == b"\x05"


# --- numeric ---------------------------------------------------------------------------

decimals = st.decimals(allow_nan=False, allow_infinity=False, places=4,
                       min_value=Decimal("-1e30"), max_value=Decimal("1e30"))


@given(decimals)
@settings(deadline=None)
def test_fixed_numeric_is_connect_decimal_with_scale(value: Decimal) -> None:
    codec = codec_for(pgoids.NUMERIC, numeric_typmod(36, 4))
    assert codec.connect["parameters"] == {"scale": "4", "connect.decimal.precision": "36"}
    assert codec.avro["logicalType"] == "decimal" and codec.avro["scale"] == 4
    text = f"{value:.4f}"
    assert from_unscaled(codec.convert(text), 4) == Decimal(text)


def test_huge_numeric_without_typmod_is_variable_scale_decimal() -> None:
    codec = codec_for(pgoids.NUMERIC, -1)
    assert codec.connect["name"] == "io.debezium.data.VariableScaleDecimal"
    huge = "123456789012345678901234567890123456789012345678901234567890.000000000001"
    value = codec.convert(huge)
    assert value["scale"] == 12
    assert from_unscaled(value["value"], 12) == Decimal(huge)
    # Debezium strips trailing zeros and never emits a negative scale.
    assert codec.convert("1500.00") == {"scale": 0, "value": (1500).to_bytes(2, "big", signed=True)}


@given(st.decimals(allow_nan=False, allow_infinity=False))
@settings(deadline=None)
def test_variable_scale_decimal_round_trip(value: Decimal) -> None:
    text = f"{value:f}"
    converted = codec_for(pgoids.NUMERIC).convert(text)
    assert converted["scale"] >= 0
    assert from_unscaled(converted["value"], converted["scale"]) == Decimal(text)


@pytest.mark.parametrize("special", ["NaN", "Infinity", "-Infinity"])
def test_numeric_specials_per_decimal_handling_mode(special: str) -> None:
    assert codec_for(pgoids.NUMERIC, numeric_typmod(10, 2)).convert(special) is None
    assert codec_for(pgoids.NUMERIC).convert(special) is None
    as_double = codec_for(pgoids.NUMERIC, decimal_handling_mode="double").convert(special)
    assert math.isnan(as_double) if special == "NaN" else math.isinf(as_double)
    as_string = codec_for(pgoids.NUMERIC, decimal_handling_mode="string")
    assert as_string.convert(special) == {"NaN": "NAN", "Infinity": "POSITIVE_INFINITY",
                                          "-Infinity": "NEGATIVE_INFINITY"}[special]
    assert as_string.convert("-12.340") == "-12.340"
    assert as_string.convert("0.0000001") == "1E-7"  # BigDecimal.toString()


def test_negative_scale_numeric_typmod_pg15() -> None:
    codec = codec_for(pgoids.NUMERIC, numeric_typmod(5, -2))
    assert codec.connect["parameters"]["scale"] == "-2"
    assert unscaled(codec.convert("12300")) == 123


def test_unknown_decimal_mode_is_a_config_error() -> None:
    with pytest.raises(CodecConfigError):
        codec_for(pgoids.NUMERIC, decimal_handling_mode="float")  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "cents"), [
    ("$1,234.56", 123456), ("-$0.01", -1), ("($5.00)", -500),
    ("$92,233,720,368,547,758.07", 9223372036854775807),
])
def test_money_is_decimal_with_two_fraction_digits(text: str, cents: int) -> None:
    codec = codec_for(pgoids.MONEY)
    assert codec.connect["parameters"] == {"scale": "2"}
    assert unscaled(codec.convert(text)) == cents


# --- temporal types ----------------------------------------------------------------------

dates = st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))


@given(dates)
@settings(deadline=None)
def test_date_is_days_since_epoch(value: date) -> None:
    codec = codec_for(pgoids.DATE)
    assert codec.connect == {"type": "int32", "name": "io.debezium.time.Date", "version": 1}
    assert codec.convert(value.isoformat()) == (value - date(1970, 1, 1)).days


def test_bc_dates_use_astronomical_years() -> None:
    # 0001-01-01 BC is year 0, one leap year (366 days) before 0001-01-01 AD.
    assert pgtext.parse_date("0001-01-01 BC") == pgtext.parse_date("0001-01-01") - 366


@given(st.integers(-9999, 0), dates)
@settings(deadline=None)
def test_bc_and_negative_years_match_shifted_gregorian_cycles(year: int, day: date) -> None:
    # Regression: era arithmetic was off by one 400-year cycle for negative years.
    # The proleptic Gregorian calendar repeats every 400 years = 146097 days.
    assume(not (day.month == 2 and day.day == 29))
    cycles = (-year) // 400 + 1
    shifted = date(year + 400 * cycles, day.month, day.day)
    expected = (shifted - date(1970, 1, 1)).days - cycles * 146_097
    assert pgtext.days_from_civil(year, day.month, day.day) == expected
    assert pgtext.civil_from_days(expected) == (year, day.month, day.day)
    pg_text = f"{1 - year:04d}-{day.month:02d}-{day.day:02d} BC"
    assert codec_for(pgoids.DATE).convert(pg_text) == expected


def test_date_infinity_matches_debezium_sentinels() -> None:
    codec = codec_for(pgoids.DATE)
    # LocalDate.parse("-5877611-06-21").toEpochDay(), computed via 400-year cycles.
    assert codec.convert("infinity") == -2_147_472_692
    assert codec.convert("-infinity") == -2_147_472_691


@given(st.integers(-10**7, 10**7))
@settings(deadline=None)
def test_civil_days_round_trip(days: int) -> None:
    assert pgtext.days_from_civil(*pgtext.civil_from_days(days)) == days


timestamps = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))


def micros_since_epoch(value: datetime) -> int:
    delta = value.replace(tzinfo=UTC) - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@given(timestamps)
@settings(deadline=None)
def test_timestamp_is_micro_timestamp(value: datetime) -> None:
    codec = codec_for(pgoids.TIMESTAMP, -1)
    assert codec.connect["name"] == "io.debezium.time.MicroTimestamp"
    assert codec.convert(value.isoformat(sep=" ")) == micros_since_epoch(value)


def test_timestamp_precision_up_to_3_is_millisecond_timestamp() -> None:
    codec = codec_for(pgoids.TIMESTAMP, 3)
    assert codec.connect == {"type": "int64", "name": "io.debezium.time.Timestamp", "version": 1}
    assert codec.convert("2018-06-20 15:13:16.945") == 1529507596945


def test_timestamp_doc_example_and_infinity() -> None:
    codec = codec_for(pgoids.TIMESTAMP, 6)
    # Debezium docs, "TIMESTAMP type": 2018-06-20 15:13:16.945104 -> 1529507596945104
    assert codec.convert("2018-06-20 15:13:16.945104") == 1529507596945104
    assert codec.convert("infinity") == 9223372036825200000
    assert codec.convert("-infinity") == -9223372036832400000


@given(timestamps, st.integers(-15 * 60, 15 * 60))
@settings(deadline=None)
def test_timestamptz_is_zoned_timestamp_in_utc(value: datetime, offset_minutes: int) -> None:
    offset = timedelta(minutes=offset_minutes)
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    text = value.isoformat(sep=" ") + f"{sign}{hours:02d}:{minutes:02d}"
    utc = value - offset
    assume(datetime(1, 1, 1) <= utc <= datetime(9999, 12, 31))
    expected = f"{utc.year:04d}-" + utc.strftime("%m-%dT%H:%M:%S") + f".{utc.microsecond:06d}Z"
    assert codec_for(pgoids.TIMESTAMPTZ, -1).convert(text) == expected


def test_timestamptz_fraction_width_follows_column_precision() -> None:
    assert codec_for(pgoids.TIMESTAMPTZ, 3).convert("2024-01-01 00:00:00+00") == \
        "2024-01-01T00:00:00.000Z"
    # precision 0: Debezium falls back to ISO_OFFSET_DATE_TIME (no trailing zeros)
    assert codec_for(pgoids.TIMESTAMPTZ, 0).convert("2024-01-01 10:00:00.5+05:30") == \
        "2024-01-01T04:30:00.5Z"


@pytest.mark.parametrize(("text", "micros"), [
    ("00:00:00", 0), ("23:59:59.999999", 86_399_999_999), ("24:00:00", 86_400_000_000),
    ("12:30:00.5", 45_000_500_000),
])
def test_time_is_micro_time(text: str, micros: int) -> None:
    codec = codec_for(pgoids.TIME, -1)
    assert codec.connect["name"] == "io.debezium.time.MicroTime"
    assert codec.convert(text) == micros
    assert codec_for(pgoids.TIME, 2).convert(text) == micros // 1000


def test_timetz_is_zoned_time_in_utc() -> None:
    codec = codec_for(pgoids.TIMETZ)
    assert codec.connect["name"] == "io.debezium.time.ZonedTime"
    assert codec.convert("12:34:56.789+05:30") == "07:04:56.789Z"
    assert codec.convert("01:00:00-03") == "04:00:00Z"
    assert codec.convert("24:00:00+00") == "24:00:00Z"  # Debezium's end-of-day boundary


def test_timestamptz_infinity_passes_through_like_debezium() -> None:
    codec = codec_for(pgoids.TIMESTAMPTZ)
    assert (codec.convert("infinity"), codec.convert("-infinity")) == ("infinity", "-infinity")


def debezium_micro_duration(years, months, days, hours, minutes, seconds) -> int:
    """MicroDuration.durationMicros as Debezium computes it (doubles, (long) truncation)."""
    number_of_days = ((years * 12) + months) * (365.25 / 12.0) + days
    number_of_seconds = (((number_of_days * 24) + hours) * 60 + minutes) * 60 + seconds
    return int(number_of_seconds * 1e6)


@pytest.mark.parametrize(("text", "expected"), [
    ("00:00:00", 0),
    ("1 day", 86_400_000_000),
    ("-1 days +02:00:00", debezium_micro_duration(0, 0, -1, 2, 0, 0.0)),
    ("1 mon", debezium_micro_duration(0, 1, 0, 0, 0, 0.0)),
    ("1 year 2 mons 3 days 04:05:06.789", debezium_micro_duration(1, 2, 3, 4, 5, 6.789)),
    ("-00:00:01.5", -1_500_000),
    ("-1 years -2 mons +3 days -04:05:06.000001",
     debezium_micro_duration(-1, -2, 3, -4, -5, -6.000001)),
])
def test_interval_is_micro_duration(text: str, expected: int) -> None:
    codec = codec_for(pgoids.INTERVAL)
    assert codec.connect == {
        "type": "int64", "name": "io.debezium.time.MicroDuration", "version": 1
    }
    assert codec.convert(text) == expected


# --- arrays ----------------------------------------------------------------------------------


def array_literal(items: list[str | None]) -> str:
    """Test-only encoder following array_out(): quote when needed, escape \\ and "."""
    def element(item: str | None) -> str:
        if item is None:
            return "NULL"
        needs_quotes = (
            item == "" or item.upper() == "NULL"
            or any(c in item for c in '{},"\\') or any(c.isspace() for c in item)
        )
        if not needs_quotes:
            return item
        return '"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "{" + ",".join(element(item) for item in items) + "}"


array_items = st.lists(
    st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs",),
                                               blacklist_characters="\x00"), max_size=12)),
    max_size=10,
)


@given(array_items)
@settings(deadline=None, max_examples=300)
def test_text_array_literal_round_trip(items: list[str | None]) -> None:
    codec = codec_for(1009)  # text[]
    assert codec.connect == {"type": "array", "items": {"type": "string", "optional": True}}
    assert codec.avro == {"type": "array", "items": ["null", "string"]}
    assert codec.convert(array_literal(items)) == items


def test_array_odd_cases() -> None:
    ints = codec_for(1007)  # int4[]
    assert ints.convert("{}") == []
    assert ints.convert("{1,NULL,-3}") == [1, None, -3]
    assert ints.convert("[0:2]={7,8,9}") == [7, 8, 9]
    assert ints.convert("{{1,2},{3,4}}") == [1, 2, 3, 4]  # flattened, documented
    texts = codec_for(1009)
    expected = ["NULL", None, "a\\b", 'x"y', "é ü"]
    assert texts.convert('{"NULL",NULL,"a\\\\b","x\\"y","é ü"}') == expected
    floats = codec_for(1022).convert("{NaN,Infinity,-Infinity}")
    assert math.isnan(floats[0]) and floats[1:] == [math.inf, -math.inf]


def test_array_of_numeric_and_date() -> None:
    nums = codec_for(1231, numeric_typmod(6, 2))
    assert nums.connect["items"]["name"] == "org.apache.kafka.connect.data.Decimal"
    assert [unscaled(v) for v in nums.convert("{1.50,-2.00}")] == [150, -200]
    assert codec_for(1182).convert("{1970-01-02,NULL}") == [1, None]


# --- user types via the resolver -----------------------------------------------------------

MOOD = TypeInfo(oid=90001, name="mood", kind="e", enum_labels=("sad", "ok", "happy"))
MOOD_ARRAY = TypeInfo(oid=90002, name="_mood", kind="b", element_oid=90001)
PRICE = TypeInfo(oid=90003, name="price", kind="d", base_oid=pgoids.NUMERIC,
                  base_type_modifier=numeric_typmod(8, 2))
TYPES = {t.oid: t for t in (MOOD, MOOD_ARRAY, PRICE)}


def test_enum_carries_allowed_values() -> None:
    codec = codec_for(90001, -1, TYPES.get)
    assert codec.connect == {"type": "string", "name": "io.debezium.data.Enum", "version": 1,
                             "parameters": {"allowed": "sad,ok,happy"}}
    assert codec.convert("ok") == "ok"


def test_enum_array_and_domain_resolve_to_their_base() -> None:
    assert codec_for(90002, -1, TYPES.get).convert("{sad,happy}") == ["sad", "happy"]
    price = codec_for(90003, -1, TYPES.get)
    assert price.connect["parameters"] == {"scale": "2", "connect.decimal.precision": "8"}
    assert unscaled(price.convert("9.99")) == 999


def test_extension_types_by_name() -> None:
    hstore = TypeInfo(oid=90010, name="hstore", kind="b")
    codec = codec_for(90010, -1, {90010: hstore}.get)
    assert codec.connect["name"] == "io.debezium.data.Json"
    assert codec.convert('"a"=>"1", "b \\"q\\""=>NULL') == '{"a":"1","b \\"q\\"":null}'
    citext = TypeInfo(oid=90011, name="citext", kind="b")
    assert codec_for(90011, -1, {90011: citext}.get).connect == {"type": "string"}


def test_unknown_type_is_a_string_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="connectors.pgtypes")
    first = codec_for(777_777)
    second = codec_for(777_777)
    assert first.connect == second.connect == {"type": "string"}
    assert first.convert("(1,2)") == "(1,2)"
    warnings = [r for r in caplog.records if "unknown PostgreSQL type" in r.getMessage()]
    assert len(warnings) == 1


def test_point_is_debezium_point_with_wkb() -> None:
    codec = codec_for(pgoids.POINT)
    assert codec.connect["name"] == "io.debezium.data.geometry.Point"
    value = codec.convert("(1.5,-2)")
    assert (value["x"], value["y"], value["srid"]) == (1.5, -2.0, None)
    assert value["wkb"] == struct.pack("<BIdd", 1, 1, 1.5, -2.0)


@given(timestamps, st.sampled_from([-1, 0, 1, 3, 6]))
@settings(deadline=None)
def test_timestamptz_fast_path_equals_general_path(value: datetime, typmod: int) -> None:
    text = value.isoformat(sep=" ") + "+00"
    width = pgtypes._time_precision(typmod)
    general = pgtext.format_utc_timestamp(pgtext.parse_timestamptz_us(text), width)
    assert pgtext.utc_text_fast(text, width) == general
    assert codec_for(pgoids.TIMESTAMPTZ, typmod).convert(text) == general


def test_iso_fraction_without_fixed_width_drops_trailing_zeros() -> None:
    # Java's ISO formatters print the fraction with as few digits as needed.
    assert pgtext.format_fraction(500_000, None) == ".5"
    assert pgtext.format_fraction(120_000, None) == ".12"
    assert pgtext.format_fraction(0, None) == ""
    assert codec_for(pgoids.TIMETZ).convert("10:00:00.50+00") == "10:00:00.5Z"
