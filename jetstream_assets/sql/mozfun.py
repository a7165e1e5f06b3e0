"""DuckDB macros standing in for the BigQuery persistent functions (`mozfun.*`, `udf.*`) that metric-hub
SQL calls. Names follow `transpile.udf_macro_name`: `mozfun.map.get_key` is `mozfun_map_get_key`.

Maps are DuckDB MAP values locally (BigQuery stores them as ARRAY<STRUCT<key, value>>), so key lookup is
a plain subscript. Bit-pattern helpers follow mozfun's documented semantics: bit 0 is the most recent day.
"""

from __future__ import annotations

MACROS: dict[str, str] = {
    # mozfun.map.get_key(map, key): the value for key, NULL when absent
    "mozfun_map_get_key": "(m, k) AS m[k]",
    # days since the most recent set bit (0 = seen today), NULL when never seen in the 28 days
    "mozfun_bits28_days_since_seen": (
        "(bits) AS CASE WHEN bits IS NULL OR (bits & 268435455) = 0 THEN NULL "
        "ELSE (SELECT min(i) FROM range(28) t(i) WHERE ((bits >> i) & 1) = 1) END"
    ),
    # whether any day in [start_offset, start_offset + n_bits) ago ... mozfun counts offsets as negative
    "mozfun_bits28_active_in_range": (
        "(bits, start_offset, n_bits) AS "
        "((bits >> (-start_offset - n_bits + 1)) & ((1 << n_bits) - 1)) > 0"
    ),
    # number of set bits in the 28-day pattern
    "mozfun_bits28_to_string": (
        "(bits) AS lpad(bin(bits & 268435455), 28, '0')"
    ),
}


def macro_statements() -> list[str]:
    """CREATE MACRO statements for a fresh DuckDB connection."""
    return [f"CREATE OR REPLACE MACRO {name}{body}" for name, body in MACROS.items()]
