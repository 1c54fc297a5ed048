"""River-style checks of every detector; SeriesWatcher on KPI-like series; pulse detect."""

from __future__ import annotations

import copy
import math
import pickle
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bench.detector_suite import evaluate, poisson
from detectors import (
    AnomalyLikelihood,
    RollingRobustZ,
    ScaledHalfSpaceTrees,
    SeasonalForecast,
    SeriesWatcher,
    TargetRule,
    load_config,
    make_detector,
)
from detectors.csvscore import CsvError, main, score_csv

HOUR = 3600.0
START = 1_767_225_600.0  # 2026-01-01 00:00 UTC


def kpi_rate(h: int, base: float = 40.0) -> float:
    """Hourly rate with growth, a daily peak and quieter weekends."""
    hod, dow = h % 24, (h // 24) % 7
    daily = 0.3 + 1.4 * math.exp(-(((hod - 14) / 4.0) ** 2))
    return base * (1 + 0.003 * h / 24) * daily * (0.6 if dow in (5, 6) else 1.0)


def series(n: int = 600, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"value": 10.0 + 3 * math.sin(i / 20) + rng.gauss(0, 1), "ts": START + i * 300.0}
            for i in range(n)]


DETECTORS = {
    "robust": lambda: make_detector("robust"),
    "robust_gaussian": lambda: AnomalyLikelihood(RollingRobustZ(), method="gaussian",
                                                 short_window=3),
    "raw_robust_z": lambda: RollingRobustZ(),
    "forecast": lambda: SeasonalForecast(kind="level", grace_period=50),
    "forecast_count": lambda: SeasonalForecast(kind="count", grace_period=50),
    "hst": lambda: ScaledHalfSpaceTrees(n_trees=5, height=6, window_size=50, grace_period=50),
    "rule": lambda: TargetRule("above", warning=12.0, critical=14.0, smooth=3),
}
BOUNDED = set(DETECTORS) - {"raw_robust_z"}


def run(det, xs: list[dict]) -> list[float]:
    out = []
    for x in xs:
        out.append(det.score_one(x))
        det.learn_one(x)
    return out


# -- River-style checks on every detector --------------------------------------------------------
@pytest.mark.parametrize("name", DETECTORS)
def test_pickle_round_trip_gives_identical_scores(name):
    xs = series(500)
    det = DETECTORS[name]()
    run(det, xs[:300])
    clone = pickle.loads(pickle.dumps(det))
    assert run(clone, xs[300:]) == run(det, xs[300:])


@pytest.mark.parametrize("name", [n for n in DETECTORS if n != "rule"])
def test_score_before_learning_is_zero(name):
    assert DETECTORS[name]().score_one({"value": 123.0, "ts": START}) == 0.0


@pytest.mark.parametrize("name", DETECTORS)
def test_input_not_mutated_and_score_one_is_pure(name):
    xs = series(300)
    det = DETECTORS[name]()
    run(det, xs[:250])
    x = {"value": 99.0, "ts": START + 1e6}
    before = copy.deepcopy(x)
    first = det.score_one(x)
    det.learn_one(x)
    assert x == before
    det2 = DETECTORS[name]()
    run(det2, xs[:250])
    assert det2.score_one(dict(before)) == det2.score_one(dict(before)) == first


@pytest.mark.parametrize("name", DETECTORS)
def test_same_seed_same_scores(name):
    xs = series(400, seed=3)
    assert run(DETECTORS[name](), xs) == run(DETECTORS[name](), xs)


@pytest.mark.parametrize("name", sorted(BOUNDED))
def test_scores_within_bounds(name):
    xs = series(400)
    xs[350] = {"value": 1e9, "ts": xs[350]["ts"]}
    xs[360] = {"value": -1e9, "ts": xs[360]["ts"]}
    assert all(0.0 <= s <= 1.0 for s in run(DETECTORS[name](), xs))


@pytest.mark.parametrize("name", ["robust", "forecast", "hst"])
def test_missing_values_are_tolerated(name):
    det = make_detector(name)
    xs = series(400)
    for i in (10, 300, 301):
        xs[i] = {"value": float("nan"), "ts": xs[i]["ts"]}
    assert all(0.0 <= s <= 1.0 for s in run(det, xs))


def test_bad_parameters_raise_clear_errors():
    with pytest.raises(ValueError, match="window"):
        RollingRobustZ(window=2)
    with pytest.raises(ValueError, match="kind"):
        SeasonalForecast(kind="counts")
    with pytest.raises(ValueError, match="critical"):
        TargetRule("below", warning=3.0, critical=5.0)
    with pytest.raises(ValueError, match="method"):
        AnomalyLikelihood(RollingRobustZ(), method="x")


# -- KPI series: SeriesWatcher -----------------------------------------------------------------
def feed(w: SeriesWatcher, values: list[float], start_hour: int = 0):
    return [w.update(START + (start_hour + i) * HOUR, v) for i, v in enumerate(values)]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("base", [3.0, 40.0, 400.0])
def test_clean_seasonal_counts_at_most_one_alarm_in_fifth_week(seed, base):
    rng = random.Random(seed)
    w = load_config().make_watcher("signups")
    values = [float(poisson(rng, kpi_rate(h, base))) for h in range(24 * 35)]
    verdicts = feed(w, values)
    assert sum(v.is_anomaly for v in verdicts[24 * 28:]) <= 1
    last = verdicts[-1]
    assert last.lower is not None and last.lower <= last.expected <= last.upper


def trained_watcher(kpi: str = "signups", seed: int = 5):
    rng = random.Random(seed)
    w = load_config().make_watcher(kpi)
    feed(w, [float(poisson(rng, kpi_rate(h))) for h in range(24 * 28)])
    return w, rng


@pytest.mark.parametrize("factor,direction", [(0.2, "down"), (3.0, "up")])
def test_step_change_is_flagged_within_two_windows(factor, direction):
    w, rng = trained_watcher()
    h0 = 24 * 28 + 11  # late morning, near the daily peak
    verdicts = feed(w, [float(poisson(rng, kpi_rate(h) * factor)) for h in range(h0, h0 + 6)],
                    start_hour=h0)
    first = next(i for i, v in enumerate(verdicts) if v.is_anomaly)
    assert first <= 1
    assert verdicts[first].direction == direction and verdicts[first].detector == "forecast"


def test_spike_is_flagged_and_not_learned():
    w, rng = trained_watcher()
    h = 24 * 28 + 13
    v = w.update(START + h * HOUR, 400.0)
    assert v.is_anomaly and v.severity == "critical" and v.direction == "up"
    after = w.update(START + (h + 1) * HOUR, float(poisson(rng, kpi_rate(h + 1))))
    assert not after.is_anomaly and after.expected < 150


def test_small_counts_are_not_anomalies():
    w, _ = trained_watcher()
    h = 24 * 28 + 3  # night: about 12 expected
    assert not w.update(START + h * HOUR, 6.0).is_anomaly


def test_sparse_ratio_needs_evidence():
    w = load_config().make_watcher("conversion_rate", "smb", "all")
    rng = random.Random(1)
    for h in range(24 * 14):
        n = 50
        w.update(START + h * HOUR, sum(rng.random() < 0.15 for _ in range(n)) / n, n=n)
    h = 24 * 14
    assert not w.update(START + h * HOUR, 0.0, n=2).is_anomaly  # 0 of 2 means little
    first = w.update(START + (h + 1) * HOUR, 0.0, n=400)  # 0 of 400 is an incident
    assert first.score >= 0.5
    assert first.is_anomaly or w.update(START + (h + 2) * HOUR, 0.0, n=400).is_anomaly


def test_rule_fires_with_levels_on_overall_series_only():
    cfg = load_config()
    overall = cfg.make_watcher("churn_rate", "all", "all")
    per_segment = cfg.make_watcher("churn_rate", "smb", "all")
    for i, watcher in enumerate((overall, per_segment)):
        verdicts = [watcher.update(START + h * HOUR, 0.03, n=100) for h in range(100)]
        assert not any(v.is_anomaly for v in verdicts), i
    v = overall.update(START + 100 * HOUR, 0.09, n=100)
    assert (v.severity, v.detector, v.direction) == ("critical", "rule:churn_rate", "up")
    assert overall.target.check_one({"value": 0.06, "n": 100}) == "warning"
    assert overall.target.check_one({"value": 0.06, "n": 5}) is None  # too few subscriptions


def test_watcher_survives_pickling():
    w, rng = trained_watcher()
    clone = pickle.loads(pickle.dumps(w))
    assert len(pickle.dumps(w)) < 4000
    tail = [float(poisson(rng, kpi_rate(h))) for h in range(24 * 28, 24 * 30)] + [0.0, 0.0]
    assert feed(clone, tail, 24 * 28) == feed(w, tail, 24 * 28)


def test_sustained_shift_becomes_the_new_normal():
    w, rng = trained_watcher()
    h0 = 24 * 28 + 11
    verdicts = feed(w, [float(poisson(rng, kpi_rate(h) * 0.25)) for h in range(h0, h0 + 24 * 5)],
                    start_hour=h0)
    assert verdicts[0].is_anomaly or verdicts[1].is_anomaly
    assert sum(v.is_anomaly for v in verdicts[-48:]) <= 2


def test_missing_value_gives_neutral_verdict():
    w, _ = trained_watcher()
    v = w.update(START, None)
    assert v.score == 0.0 and not v.is_anomaly


# -- configuration -------------------------------------------------------------------------------
def test_config_overrides_and_clear_errors(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[alert]\nwarning_persistence = 1\n[kpis.signups]\nmin_abs_change = 9\n'
                 '[kpis.new_kpi]\nkind = "count"\n[kpis.mrr.forecast]\nalpha = 0.1\n')
    cfg = load_config(str(p))
    assert cfg.alert.warning_persistence == 1 and cfg.kpi("signups").min_abs_change == 9.0
    assert cfg.kpi("signups").kind == "count" and cfg.kpi("new_kpi").kind == "count"
    mrr = cfg.make_watcher("mrr").model.forecaster   # a level KPI: the core around its forecaster
    assert mrr.alpha == 0.1 and mrr.slots == 0
    for text, match in [
        ("[alert]\nwarning_score = 'high'\n", "'alert.warning_score' must be a float"),
        ("[kpis.signups]\nkind = 'counts'\n", "'kpis.signups.kind' must be one of"),
        ("[forecast]\nalpha = 2.0\n", "alpha must be in"),
        ("[nope]\nx = 1\n", r"unknown detector config table \[nope\]"),
        ("[rules.x]\nop = 'above'\n", "needs keys critical, warning"),
        ("[csv]\ndetector = 'magic'\n", "'csv.detector' must be one of"),
        ("[alert\n", "not valid TOML"),
    ]:
        p.write_text(text)
        with pytest.raises(ValueError, match=match):
            load_config(str(p))
    with pytest.raises(ValueError, match="does not exist"):
        load_config(str(tmp_path / "missing.toml"))


# -- pulse detect on awkward CSVs --------------------------------------------------------------
def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "timestamp,value") -> Path:
    path.write_text(header + "\n" + "".join(f"{t},{v}\n" for t, v in rows))
    return path


def read_scores(path: Path) -> list[tuple[str, str, float]]:
    lines = path.read_text().splitlines()
    assert lines[0] == "timestamp,value,anomaly_score"
    out = []
    for line in lines[1:]:
        t, v, s = line.rsplit(",", 2)
        out.append((t, v, float(s)))
    return out


def iso(i: int, step: float = 300.0) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(START + i * step, UTC).strftime("%Y-%m-%d %H:%M:%S")


def check(tmp_path, rows, detector="robust", name="in.csv"):
    src = write_csv(tmp_path / name, rows)
    dst = tmp_path / f"out_{name}"
    stats = score_csv(src, dst, detector)
    scores = read_scores(dst)
    assert len(scores) == len(rows) == stats["rows"]
    assert [(t, v) for t, v, _ in scores] == rows
    assert all(0.0 <= s <= 1.0 for _, _, s in scores)
    return [s for _, _, s in scores], stats


@pytest.mark.parametrize("detector", ["robust", "forecast", "hst"])
def test_csv_flat_then_change(tmp_path, detector):
    rows = [(iso(i), "5") for i in range(1000)] + [(iso(1000 + i), "7") for i in range(5)]
    scores, _ = check(tmp_path, rows, detector)
    assert max(scores[:1000]) == 0.0
    if detector == "robust":
        assert scores[1000] >= 0.99


def test_csv_ten_rows_and_empty(tmp_path):
    scores, _ = check(tmp_path, [(iso(i), str(i)) for i in range(10)])
    assert scores == [0.0] * 10
    assert check(tmp_path, [], name="empty.csv")[0] == []


def test_csv_gaps_irregular_timestamps_missing_values(tmp_path):
    rng = random.Random(0)
    t, rows = 1_400_000_000.0, []
    for i in range(3000):
        t += rng.choice([1, 60, 300, 301, 7200, 86400 * 3]) if i % 500 else 86400 * 30
        v = "" if i % 97 == 0 else "NaN" if i % 211 == 0 else f"{20 + rng.gauss(0, 2):.3f}"
        rows.append((f"{t:.0f}" if i % 2 else iso(int((t - START) / 300)), v))
    rows.append(("garbage-time", "21.0"))
    rows.append((iso(10**6), "500"))
    scores, stats = check(tmp_path, rows)
    assert stats["missing_values"] == sum(1 for _, v in rows if v in ("", "NaN"))
    assert all(s == 0.0 for (_, v), s in zip(rows, scores, strict=True) if v in ("", "NaN"))
    assert stats["bad_timestamps"] == 1 and scores[-1] >= 0.99


def test_csv_fifty_thousand_rows_causal(tmp_path):
    rng = random.Random(2)
    rows = [(iso(i), f"{100 + 30 * math.sin(i / 288 * 2 * math.pi) + rng.gauss(0, 3):.2f}")
            for i in range(50_000)]
    rows[40_000] = (rows[40_000][0], "400")
    full, stats = check(tmp_path, rows, name="full.csv")   # speed: make bench, detect_rows_per_s
    assert stats["rows"] == 50_000
    assert full[40_000] >= 0.9
    assert sum(s >= 0.5 for s in full) <= 10
    prefix, _ = check(tmp_path, rows[:30_123], name="prefix.csv")
    assert prefix == full[:30_123]


def test_csv_clear_errors(tmp_path, capsys):
    with pytest.raises(CsvError, match="does not exist"):
        score_csv(tmp_path / "nope.csv", tmp_path / "out.csv")
    bad = write_csv(tmp_path / "bad.csv", [("1", "2")], header="time,val")
    with pytest.raises(CsvError, match="'timestamp' and 'value'"):
        score_csv(bad, tmp_path / "out.csv")
    assert main([str(bad), str(tmp_path / "out.csv")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    ok = write_csv(tmp_path / "ok.csv", [(iso(i), "1") for i in range(5)], header="Value,TIMESTAMP")
    assert main([str(ok), str(tmp_path / "o.csv"), "--detector", "forecast"]) == 0


def test_csv_module_runs_as_script(tmp_path):
    src = write_csv(tmp_path / "in.csv", [(iso(i), str(i % 7)) for i in range(100)])
    r = subprocess.run([sys.executable, "-m", "detectors.csvscore", str(src),
                        str(tmp_path / "out.csv"), "--detector", "robust"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "100 rows" in r.stderr and "Traceback" not in r.stderr


# -- the default detector on NAB-like labelled series --------------------------------------------
def test_robust_detector_on_nab_like_suite():
    r = evaluate("robust", n=3000)
    assert r["caught"] >= r["anomalies"] - 1
    assert r["false_positives"] <= 5
    delays = [d for row in r["series"] for d in row["delays"] if d is not None]
    assert max(delays) <= 5


def test_default_detector_on_nab_like_suite():
    # the core alarms once per onset, at once, at its working threshold (0.44 on the real
    # corpus of tests/test_benchmark.py); measured at 0.4: 10 of 11 caught at delay 0 (the missed
    # one, a 2.6x three-hour bump in log-normal hourly clicks, is within that series' own tails)
    # and 5 points over the threshold in 36,000 normal ones
    r = evaluate(n=3000, threshold=0.4)
    assert r["detector"] == "surprise"
    assert r["caught"] >= r["anomalies"] - 1
    assert r["false_positives"] <= 10
    delays = [d for row in r["series"] for d in row["delays"] if d is not None]
    assert max(delays) == 0


# -- variance calibration and count runs ----------------------------------------------------------
def test_ratio_calibration_learns_how_far_binomial_noise_is_off():
    rng = random.Random(3)
    mean_of_scores, shares = SeasonalForecast(kind="ratio"), SeasonalForecast(kind="ratio")
    uncalibrated = SeasonalForecast(kind="ratio", calibrate=False)
    for h in range(24 * 14):
        x = {"ts": START + h * HOUR, "n": 200.0}
        # a mean of 200 scores ~ Beta(14, 6): variance 0.21 * 0.79 / 21 / 200, 1/21 of binomial
        score = {**x, "value": sum(rng.betavariate(14, 6) for _ in range(200)) / 200}
        mean_of_scores.learn_one(score)
        uncalibrated.learn_one(score)
        shares.learn_one({**x, "value": sum(rng.random() < 0.3 for _ in range(200)) / 200})
    assert 0.6 / 21 < mean_of_scores.scale < 1.6 / 21
    assert 0.6 < shares.scale < 1.6
    drop = {"ts": START + 24 * 14 * HOUR, "n": 200.0, "value": 0.66}   # 0.04 below 0.70
    assert mean_of_scores.score_one(drop) >= 0.5 > uncalibrated.score_one(drop)
    assert shares.score_one({**drop, "value": 0.26}) < 0.5


def test_rare_event_ratio_keeps_its_binomial_band():
    w = load_config().make_watcher("payment_failure_rate")
    rng = random.Random(4)
    for h in range(24 * 21):
        n = rng.randint(2, 8)
        w.update(START + h * HOUR, sum(rng.random() < 0.03 for _ in range(n)) / n, n=n)
    assert w.model.scale == 1.0       # n p < 5: never taught
    assert not w.update(START + 24 * 21 * HOUR, 1 / 3, n=3).is_anomaly


def test_count_run_near_zero_is_caught_by_its_total():
    rng = random.Random(6)
    w = load_config().make_watcher("signups", "all", "organic")
    feed(w, [float(poisson(rng, kpi_rate(h, 3.0))) for h in range(24 * 28)])
    h0 = 24 * 28 + 11
    verdicts = feed(w, [0.0] * 6, start_hour=h0)   # about 3 an hour expected, none recorded
    assert any(v.is_anomaly and v.direction == "down" for v in verdicts)


@pytest.mark.parametrize("kpi,kind", [("signups", "count"), ("churn_rate", "level"),
                                      ("payment_failure_rate", "ratio")])
def test_nothing_is_critical_inside_its_own_band(kpi, kind):
    """Shifts of every size, sustained and not: a critical point lies outside the band shown."""
    rng = random.Random(11)
    w = load_config().make_watcher(kpi, "all", "all")
    criticals = 0
    for h in range(24 * 35):
        shift = (1.0, 1.2, 1.5, 0.7, 3.0)[(h // 20) % 5] if h > 24 * 21 else 1.0
        if kind == "count":
            value, n = float(poisson(rng, kpi_rate(h) * shift)), None
        elif kind == "level":
            value, n = 0.03 * shift + rng.gauss(0, 0.0005), 400.0
        else:
            n = 200.0
            p = 0.03 * shift if shift < 2 else 0.3   # min_abs_change is 20 pp
            value = sum(rng.random() < p for _ in range(200)) / n
        v = w.update(START + h * HOUR, value, n)
        if v.severity == "critical":   # a run's verdict speaks of the run: its value, its band
            criticals += 1
            shown = value if v.value is None else v.value
            assert not v.lower <= shown <= v.upper, (h, shown, v)
    assert criticals > 0   # the shifts are large enough to be critical somewhere


def test_a_share_of_a_few_events_has_its_exact_binomial_band_not_a_negative_one():
    rng = random.Random(3)
    w = load_config().make_watcher("payment_failure_rate", "all", "all")
    for h in range(24 * 10):
        w.update(START + h * HOUR, sum(rng.random() < 0.03 for _ in range(60)) / 60, 60.0)
    v = w.update(START + 24 * 10 * HOUR, 0.0, 5.0)
    assert v.lower == 0.0 and 0.4 <= v.upper <= 0.8   # 0 to 2-4 failures of 5 are ordinary
    k_hi = round(v.upper * 5)
    assert k_hi == v.upper * 5   # the band's edge is a count of failures the window can have
    assert not w.update(START + 24 * 10 * HOUR + HOUR, k_hi / 5, 5.0).severity == "critical"
