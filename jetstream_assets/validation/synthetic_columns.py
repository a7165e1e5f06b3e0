"""A synthetic table's columns: the Arrow type (and what to fill it with) of each column whose uses the SQL
gives as a `TypeHint` (`synthetic_types`), with Mozilla's nested telemetry paths typed as BigQuery has them
(`path_rule`). Key/value lists keep the key and value types `map.get_key` has overloads for."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from jetstream_assets.sql.mozfun import KV_KEY_TYPES, KV_VALUE_TYPES
from jetstream_assets.validation.synthetic_types import TypeHint, is_client_id, path_rule


@dataclass
class Column:
    """A resolved column (or struct field / element): Arrow type and how to fill it."""

    name: str
    kind: str  # leaf kind: id, group_id, date, ts, bool, int, bits, float, str, hist, json; or struct/list
    arrow: pa.DataType
    fields: list["Column"] = field(default_factory=list)
    element: "Column | None" = None
    literals: tuple[str, ...] = ()
    json_paths: tuple[str, ...] = ()


def _leaf_kind(name: str, hint: TypeHint) -> str:
    lname = name.lower()
    if is_client_id(lname):
        return "id"
    if lname == "profile_group_id" or lname.endswith("profile_group_id"):
        return "group_id"
    if lname == "document_id":
        return "uuid"
    if lname.endswith("_bits"):
        return "bits"
    for kind in ("hist", "json", "ts", "date", "bool", "str", "float"):
        if kind in hint.hints:
            return kind
    if hint.hints & {"int", "num"}:
        return "float" if lname.endswith(("_mean", "hours_sum", "_hours")) else "int"
    if "castnum" in hint.hints:
        return "bool"
    return "str"


_KIND_ARROW = {
    "id": pa.string(), "group_id": pa.string(), "uuid": pa.string(), "date": pa.date32(),
    "ts": pa.timestamp("us"), "bool": pa.bool_(), "int": pa.int64(), "bits": pa.int64(),
    "float": pa.float64(), "str": pa.string(), "hist": pa.string(), "json": pa.string(),
}


def column(name: str, hint: TypeHint, path: list[str]) -> Column:
    """Column `name` (at `path`: its parent structs' names, then its own), typed from the hints of its uses."""
    rule = path_rule(path)
    if rule is not None and (rule.fields or rule.element or rule.hints):
        if rule.element is not None or rule.fields:
            hint = TypeHint(
                fields=rule.fields, element=rule.element, literals=set(hint.literals)
            ).merge(TypeHint(fields=hint.fields, element=hint.element, literals=hint.literals))
            if rule.element is not None and hint.element is not None and rule.element.fields:
                # a rule fixes the key/value types; usage only adds literals (keys looked up)
                for sub in ("key", "value"):
                    if sub in rule.element.fields:
                        fixed = rule.element.fields[sub]
                        used = hint.element.fields.get(sub, TypeHint())
                        hint.element.fields[sub] = TypeHint(
                            hints=set(fixed.hints), fields=dict(fixed.fields), element=fixed.element,
                            literals=used.literals | fixed.literals,
                        )
        elif not (
            rule.hints & {"date", "ts"}
            and hint.hints & {"str", "hist", "json", "num", "int", "float", "bool"}
        ):
            # a name that looks like a date but is used otherwise (Glean's string
            # client_info.first_run_date, a summed active_metric_date flag) keeps its usage
            hint = TypeHint(hints=set(rule.hints), literals=hint.literals, json_paths=hint.json_paths)
    if hint.element is not None:
        element = column("element", hint.element, [*path, "[]"])
        if _is_kv(element):
            element = _kv_element(element)
        return Column(name, "list", pa.list_(element.arrow), element=element)
    if hint.fields:
        fields = [column(n, sub, [*path, n]) for n, sub in sorted(hint.fields.items())]
        return Column(name, "struct", pa.struct([pa.field(f.name, f.arrow) for f in fields]), fields=fields)
    kind = _leaf_kind(name, hint)
    return Column(
        name, kind, _KIND_ARROW[kind], literals=tuple(sorted(hint.literals)),
        json_paths=tuple(sorted(hint.json_paths)),
    )


def _is_kv(element: Column) -> bool:
    return element.kind == "struct" and {f.name for f in element.fields} <= {"key", "value"} and any(
        f.name == "key" for f in element.fields
    )


_DUCK_OF_ARROW = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.bool_(): "BOOLEAN", pa.float64(): "DOUBLE"}


def _kv_element(element: Column) -> Column:
    """Key/value structs restricted to the types `map.get_key` has overloads for."""
    by_name = {f.name: f for f in element.fields}
    key = by_name["key"]
    if _DUCK_OF_ARROW.get(key.arrow) not in KV_KEY_TYPES:
        key = Column("key", "str", pa.string(), literals=key.literals)
    value = by_name.get("value") or Column("value", "int", pa.int64())
    if value.kind == "struct":
        names = [f.name for f in value.fields]
        if names == ["branch"] or set(names) <= {"branch", "extra"}:
            value = _experiment_value(set(names))
        else:
            value = Column("value", "str", pa.string(), literals=value.literals)
    elif _DUCK_OF_ARROW.get(value.arrow) not in KV_VALUE_TYPES:
        value = Column("value", "str", pa.string(), literals=value.literals)
    fields = [key, value]
    return Column(
        "element", "struct", pa.struct([pa.field(f.name, f.arrow) for f in fields]), fields=fields
    )


def _experiment_value(names: set[str]) -> Column:
    branch = Column("branch", "branch", pa.string())
    if "extra" not in names:
        return Column("value", "struct", pa.struct([pa.field("branch", pa.string())]), fields=[branch])
    extra_fields = [Column("type", "str", pa.string()), Column("enrollment_id", "uuid", pa.string())]
    extra = Column("extra", "struct", pa.struct([pa.field(f.name, f.arrow) for f in extra_fields]),
                   fields=extra_fields)
    return Column(
        "value", "struct",
        pa.struct([pa.field("branch", pa.string()), pa.field("extra", extra.arrow)]),
        fields=[branch, extra],
    )
