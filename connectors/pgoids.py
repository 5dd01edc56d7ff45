"""Builtin PostgreSQL type OIDs (fixed in pg_type.dat) that the codecs map by number.

Extension and user types (hstore, citext, enums, domains) have per-database OIDs and
are resolved by name through `connectors.pgtypes.TypeInfo` instead.
"""

from __future__ import annotations

BOOL, BYTEA, CHAR, NAME, INT8, INT2, INT4, TEXT, OID = 16, 17, 18, 19, 20, 21, 23, 25, 26
JSON, XML, POINT, FLOAT4, FLOAT8, MONEY, MACADDR8, MACADDR, INET, CIDR = (
    114, 142, 600, 700, 701, 790, 774, 829, 869, 650
)
BPCHAR, VARCHAR, DATE, TIME, TIMESTAMP, TIMESTAMPTZ, INTERVAL, TIMETZ = (
    1042, 1043, 1082, 1083, 1114, 1184, 1186, 1266
)
BIT, VARBIT, NUMERIC, UUID, JSONB, TSVECTOR = 1560, 1562, 1700, 2950, 3802, 3614
INT4RANGE, NUMRANGE, TSRANGE, TSTZRANGE, DATERANGE, INT8RANGE = 3904, 3906, 3908, 3910, 3912, 3926
RANGE_OIDS = (INT4RANGE, NUMRANGE, TSRANGE, TSTZRANGE, DATERANGE, INT8RANGE)

# array oid -> (element oid, delimiter)
BUILTIN_ARRAYS: dict[int, tuple[int, str]] = {
    1000: (BOOL, ","), 1001: (BYTEA, ","), 1002: (CHAR, ","), 1003: (NAME, ","),
    1005: (INT2, ","), 1007: (INT4, ","), 1009: (TEXT, ","), 1014: (BPCHAR, ","),
    1015: (VARCHAR, ","), 1016: (INT8, ","), 1021: (FLOAT4, ","), 1022: (FLOAT8, ","),
    1028: (OID, ","), 1017: (POINT, ","), 199: (JSON, ","), 143: (XML, ","),
    791: (MONEY, ","), 1040: (MACADDR, ","), 775: (MACADDR8, ","), 1041: (INET, ","),
    651: (CIDR, ","), 1182: (DATE, ","), 1183: (TIME, ","), 1115: (TIMESTAMP, ","),
    1185: (TIMESTAMPTZ, ","), 1187: (INTERVAL, ","), 1270: (TIMETZ, ","),
    1561: (BIT, ","), 1563: (VARBIT, ","), 1231: (NUMERIC, ","), 2951: (UUID, ","),
    3807: (JSONB, ","), 3905: (INT4RANGE, ","), 3907: (NUMRANGE, ","),
    3909: (TSRANGE, ","), 3911: (TSTZRANGE, ","), 3913: (DATERANGE, ","),
    3927: (INT8RANGE, ","), 3643: (TSVECTOR, ","),
}
