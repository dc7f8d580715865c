"""Keeps ``python -m bench`` working: the cheapest pieces at a tiny size, no timing asserted.

* the raw REQ/REP baseline (one peer process, the shared request clients);
* the gateway-to-strategy throughput run with batched frames (two real workers under the
  bench's stand-in supervisor): every tick arrives, none is a decode error;
* the table and the JSON shape, from those results.
"""

from __future__ import annotations

import json

import pytest

from bench import __main__ as bench_main
from bench import raw, report, ticks
from bench.common import QUICK

TINY = QUICK.scaled(0.005)  # 1500 ticks, 50 round trips


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    return {
        "raw": {"reqrep": raw.reqrep(str(tmp), TINY.req_n, TINY.dealer_n, 4)},
        "ticks": {"1_batched": ticks.throughput(TINY, subs=1, batched=True, log=lambda *_: None)},
    }


def test_raw_reqrep_answers_every_request(results):
    r = results["raw"]["reqrep"]
    assert r["rtt"]["n"] == TINY.req_n
    assert r["req_s"] > 0 and r["dealer_per_s"] > 0


def test_batched_ticks_reach_the_strategy_whole(results):
    t = results["ticks"]["1_batched"]
    assert t["published"] == TINY.ticks
    assert t["received"] == [TINY.ticks]
    assert t["lost"] == 0 and t["decode_errors"] == 0 and t["seq_gaps"] == 0


def test_report_renders_a_row_per_figure(results):
    rows = report.rows(results)
    text = report.render(rows)
    assert "ticks/s into 1 strategy, batched frames" in text
    assert "order round trip" not in text  # no exchange run here: no row, not a made-up number
    assert "window UI-thread lag" not in text  # not run: not mentioned
    json.dumps([r.as_dict() for r in rows])
    text = report.render(report.rows({**results, "ui": {"available": False}}))
    assert "window UI-thread lag | not available" in text


def test_median_merge_takes_medians_of_numbers_only():
    runs = [{"a": 1, "b": {"c": 10.0, "s": "x"}, "ok": True}, {"a": 3, "b": {"c": 30.0, "s": "y"}, "ok": False},
            {"a": 2, "b": {"c": 20.0, "s": "z"}, "ok": True}]
    assert bench_main.median_merge(runs) == {"a": 2, "b": {"c": 20.0, "s": "x"}, "ok": True}


def test_cli_rejects_unknown_benchmarks(capsys):
    assert bench_main.main(["--only", "nope"]) == 2
