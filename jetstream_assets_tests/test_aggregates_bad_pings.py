"""Bad pings are counted and skipped with a log line naming the document and the reason, and the others
aggregate: at load (invalid JSON, missing sections, wrong types, absurd bucket indexes, huge keyed maps)
and in the warehouse query (rows that reached the table another way)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging

import pandas as pd
import pytest

from jetstream_assets.aggregates.compute import aggregate_day
from jetstream_assets.aggregates.source import append_pings, load_pings, ping_row
from jetstream_assets.cli import main
from jetstream_assets.demo.pings import documents
from jetstream_assets.warehouse.local import LocalWarehouse
from jetstream_assets_tests.test_aggregates_helpers import REGISTRY, reference

DAY = dt.date(2026, 10, 20)


def _good(n: int = 40) -> list[dict]:
    return list(documents(DAY, n, seed=11))


def _broken(base: dict) -> list[tuple[str, str]]:
    """(JSON line, the reason the loader gives) for each kind of bad ping."""
    def variant(change) -> str:
        doc = copy.deepcopy(base)
        doc["id"] = f"bad-{len(lines)}"
        change(doc)
        return json.dumps(doc)

    lines: list[tuple[str, str]] = []
    lines.append(('{"meta": {"submissionDate": "20261020"', "invalid JSON"))
    lines.append(("[1, 2, 3]", "not a JSON object"))
    cases = [
        (lambda d: d.pop("meta"), "ping.meta is missing, not an object"),
        (lambda d: d["application"].pop("buildId"), "application.buildId is missing or not text"),
        (lambda d: d.update(payload="gzip?"), "ping.payload is str, not an object"),
        (lambda d: d["payload"].update(histograms=[1, 2]), "payload.histograms is list, not an object"),
        (lambda d: d["meta"].update(submissionDate="2026-10-20"), "meta.submissionDate is missing or not a YYYYMMDD"),
        (lambda d: d["payload"]["histograms"].update(GC_MS={"sum": 1, "histogram_type": 0, "values": {"99999999999": 1}}),
         "absurd bucket index"),
        (lambda d: d["payload"]["keyedHistograms"].update(HUGE={str(i): {"sum": 1} for i in range(1_001)}),
         "keyed histogram payload.keyedHistograms.HUGE has 1,001 keys"),
        (lambda d: d["payload"].update(childPayloads={"0": {}}), "payload.childPayloads is dict, not a list"),
    ]
    for change, reason in cases:
        lines.append((variant(change), reason))
    return lines


def test_bad_pings_are_counted_logged_and_skipped_at_load(tmp_path, caplog):
    good = _good()
    bad = _broken(good[0])
    path = tmp_path / "pings.jsonl"
    lines = [json.dumps(p) for p in good[:20]] + [line for line, _ in bad] + [json.dumps(p) for p in good[20:]]
    path.write_text("\n".join(lines) + "\n")
    warehouse = LocalWarehouse(root=str(tmp_path / "warehouse"))
    with caplog.at_level(logging.WARNING, logger="jetstream_assets.aggregates"):
        report = load_pings(warehouse, path)
    assert report.loaded == len(good)
    assert sum(report.skipped.values()) == len(bad)
    messages = [r.getMessage() for r in caplog.records]
    for offset, (_, reason) in enumerate(bad):
        number = 21 + offset
        assert any(m.startswith(f"pings.jsonl:{number} document ") and reason in m for m in messages), (reason, messages)
    assert any("document bad-4 skipped: ping.payload is str" in m for m in messages)
    result = aggregate_day(warehouse, DAY, REGISTRY)
    assert not result.rejected
    got = {tuple(r[c] for c in ("date", "channel", "version", "metric", "application", "architecture", "os",
                                "osVersion", "label", "child")): [r["count"], r["sum"], list(r["histogram"])]
           for r in result.frames["build_id"].to_dict("records")}
    assert got == reference(good, "build_id")


def test_the_query_skips_what_reached_the_table_another_way(tmp_path, caplog):
    good = _good(10)
    rows = []
    for index, doc in enumerate(good):
        row = ping_row(doc, f"doc-{index}")
        row["payload"] = json.dumps(doc)
        rows.append(row)
    no_build = copy.deepcopy(rows[0]) | {"document_id": "doc-nobuild"}
    no_build["metadata"] = {"uri": {**rows[0]["metadata"]["uri"], "app_build_id": "nonsense"}}
    no_payload = copy.deepcopy(rows[1]) | {"document_id": "doc-nopayload", "payload": json.dumps({"meta": {}})}
    invalid = copy.deepcopy(rows[2]) | {"document_id": "doc-invalid", "payload": "{not json"}
    odd = copy.deepcopy(good[3])  # wrong types inside a good ping: only those probes are skipped
    odd["payload"]["histograms"] = {
        "GC_MS": {**odd["payload"]["histograms"].get("GC_MS", {"values": {"1": 1}}), "sum": "12", "histogram_type": 0},
        "ODD_VALUES": {"sum": 5, "histogram_type": 1, "range": [1, 10], "bucket_count": 11,
                       "values": {"x": 3, "2": "many", "5": 1}},
    }
    odd["payload"]["processes"]["parent"]["scalars"] = {"a.text": "IGNORED", "a.number": 7, "a.negative": -3}
    odd_row = ping_row(odd, "doc-odd") | {"payload": json.dumps(odd)}
    warehouse = LocalWarehouse(root=str(tmp_path / "warehouse"))
    append_pings(warehouse, [*rows, no_build, no_payload, invalid, odd_row])
    with caplog.at_level(logging.WARNING, logger="jetstream_assets.aggregates"):
        result = aggregate_day(warehouse, DAY, REGISTRY)
    assert result.rejected == {"build id does not start with a date": 1, "no payload object": 1,
                               "payload is not valid JSON": 1}
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "doc-nobuild" in messages and "doc-invalid" in messages and "doc-nopayload" in messages
    frame = result.frames["submission_date"]
    odd_rows = frame[frame["metric"] == "ODD_VALUES"]
    assert odd_rows["count"].sum() == 1 and odd_rows["sum"].sum() == 5
    assert list(odd_rows.iloc[0]["histogram"][:6]) == [0, 0, 0, 0, 0, 1]  # "x" skipped, "many" counts 0
    assert set(frame["metric"]) >= {"SCALARS_A.NUMBER"}
    assert not {"SCALARS_A.TEXT", "SCALARS_A.NEGATIVE"} & set(frame["metric"])
    expected_gc = sum(1 for d in good if "GC_MS" in d["payload"]["histograms"]) + sum(
        1 for d in [*good, odd] for p in d["payload"]["processes"].values() if "GC_MS" in p.get("histograms", {}))
    assert frame[(frame["metric"] == "GC_MS")]["count"].sum() == expected_gc  # the string sum was skipped


def test_cli_on_an_empty_home(tmp_path, capsys):
    home = tmp_path / "home"
    assert main(["aggregates", "run", "--all-dates", "--home", str(home)]) == 2
    assert "no pings loaded" in capsys.readouterr().err
    assert main(["aggregates", "load-pings", str(tmp_path / "missing.jsonl"), "--home", str(home)]) == 2
    assert "No such ping file" in capsys.readouterr().err
    assert main(["aggregates", "run", "--date", "2026-10-20", "--home", str(home)]) == 2
    assert "YYYYMMDD" in capsys.readouterr().err
    path = tmp_path / "pings.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in _good(30)))
    assert main(["aggregates", "load-pings", str(path), "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "30 pings loaded; submission dates: 2026-10-20 (30)" in out
    assert main(["aggregates", "run", "--date", "20261020", "--home", str(home)]) == 0
    assert "2026-10-20: ok" in capsys.readouterr().out
    tables = sorted(p.name for p in (home / "warehouse" / "telemetry_aggregates").iterdir())
    assert tables == ["build_id_20261020.parquet", "submission_date_20261020.parquet"]
    assert main(["aggregates", "load-pings", str(path), "--home", str(home)]) == 0
    assert "30 pings loaded" in capsys.readouterr().out
    assert main(["aggregates", "run", "--date", "20261020", "--home", str(home)]) == 0
    twice = pd.read_parquet(home / "warehouse" / "telemetry_aggregates" / "submission_date_20261020.parquet")
    assert main(["aggregates", "load-pings", str(path), "--replace", "--home", str(home)]) == 0
    assert main(["aggregates", "run", "--date", "20261020", "--home", str(home)]) == 0
    once = pd.read_parquet(home / "warehouse" / "telemetry_aggregates" / "submission_date_20261020.parquet")
    assert twice["count"].sum() == 2 * once["count"].sum()  # appended twice; replaced
    assert main(["aggregates", "run", "--date", "20001020", "--home", str(home)]) == 2
    assert "outside the aggregates partitions" in capsys.readouterr().err


@pytest.mark.parametrize("line", ["[" * 100_000 + "]" * 100_000, '{"a": ' * 50_000 + "1" + "}" * 50_000])
def test_deeply_nested_documents_are_refused(tmp_path, line, caplog):
    path = tmp_path / "deep.jsonl"
    path.write_text(line + "\n")
    report = load_pings(LocalWarehouse(root=str(tmp_path / "w")), path)
    assert report.loaded == 0 and sum(report.skipped.values()) == 1
