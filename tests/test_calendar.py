"""The calendar of known events: the file format, its validation, queries and round trips."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from detectors.calendar import (
    ENV_VAR,
    KINDS,
    Calendar,
    CalendarError,
    CalendarEvent,
    load_calendar,
    parse_calendar,
    to_toml,
    write_calendar,
)
from kpis.formulas import KPIS

T0 = 1767744000.0  # 2026-01-07T00:00:00Z
HOUR, DAY = 3600.0, 86400.0

EXAMPLE = '''
# known events of January
[[event]]
name = "Orthodox Christmas"
kind = "holiday"
start = "2026-01-07T00:00:00Z"
end = "2026-01-08T00:00:00Z"
kpis = ["signups", "scans"]
effect = 0.6

[[event]]
name = "Referral push"
kind = "campaign"
start = "2026-01-07T12:00:00Z"
end = "2026-01-09T00:00:00Z"
kpis = ["signups"]
channel = "referral"
effect = 2.0

[[event]]
name = "Matcher v2"
kind = "release"
start = 2026-01-08T09:00:00Z
end = 2026-01-08T10:00:00+00:00
segment = "new_grad"

[[event]]
name = "Broker upgrade"
kind = "maintenance"
start = "2026-01-08T02:00:00Z"
end = "2026-01-08T02:20:00Z"
'''


def cal() -> Calendar:
    return parse_calendar(EXAMPLE, "jan.toml")


# ------------------------------------------------------------------------------ parsing


def test_example_parses_into_events_by_start():
    events = list(cal())
    assert [e.name for e in events] == ["Orthodox Christmas", "Referral push", "Broker upgrade",
                                        "Matcher v2"]
    xmas, push, upgrade, release = events
    assert xmas == CalendarEvent("Orthodox Christmas", "holiday", T0, T0 + DAY,
                                 ("signups", "scans"), effect=0.6)
    assert push.channel == "referral" and push.segment is None and push.effect == 2.0
    assert push.start == T0 + 12 * HOUR and push.end == T0 + 2 * DAY
    # unquoted TOML date-times and +00:00 are UTC too
    assert (release.start, release.end) == (T0 + 33 * HOUR, T0 + 34 * HOUR)
    assert release.segment == "new_grad" and release.kpis is None and release.effect is None
    assert upgrade.kind == "maintenance" and upgrade.end - upgrade.start == 20 * 60
    assert len(cal()) == 4 and cal().source == "jan.toml"
    assert set(KINDS) == {"holiday", "campaign", "release", "maintenance"}


def test_empty_file_is_an_empty_calendar_and_all_means_every_series():
    assert len(parse_calendar("")) == 0
    (e,) = parse_calendar('[[event]]\nname = "x"\nkind = "release"\nstart = '
                          '"2026-01-07T00:00:00Z"\nend = "2026-01-07T01:00:00Z"\n'
                          'channel = "all"\nsegment = "all"\n')
    assert e.channel is None and e.segment is None


def test_every_kpi_id_of_the_formulas_is_accepted():
    ids = ", ".join(f'"{k.id}"' for k in KPIS)
    (e,) = parse_calendar(f'[[event]]\nname = "x"\nkind = "release"\nstart = '
                          f'"2026-01-07T00:00:00Z"\nend = "2026-01-07T01:00:00Z"\nkpis = [{ids}]\n')
    assert e.kpis == tuple(k.id for k in KPIS)


# --------------------------------------------------------------------------- validation

GOOD = {"name": '"Sale"', "kind": '"campaign"', "start": '"2026-01-07T00:00:00Z"',
        "end": '"2026-01-08T00:00:00Z"'}


def entry(**fields: str | None) -> str:
    """A calendar of one ``[[event]]``: GOOD with ``fields`` changed (None: left out)."""
    body = {**GOOD, **fields}
    return "[[event]]\n" + "".join(f"{k} = {v}\n" for k, v in body.items() if v is not None)


@pytest.mark.parametrize(("fields", "message"), [
    ({"colour": '"red"'}, r"unknown key\(s\) colour; allowed: name, kind, start, end, kpis"),
    ({"kind": '"party"'}, r"kind 'party' is not one of holiday, campaign, release, maintenance"),
    ({"end": '"2026-01-07T00:00:00Z"'}, r"end 2026-01-07T00:00:00Z is not after start"),
    ({"end": '"2026-01-06T00:00:00Z"'}, r"is not after start 2026-01-07T00:00:00Z"),
    ({"start": '"yesterday"'}, r"start 'yesterday' is not a date-time; give start as an "
                               r"ISO-8601 UTC time"),
    ({"start": '"2026-01-07T00:00:00"'}, r"start 2026-01-07T00:00:00 is not in UTC"),
    ({"start": '"2026-01-07"'}, r"start 2026-01-07 is not in UTC"),
    ({"end": '"2026-01-08T00:00:00+02:00"'}, r"end 2026-01-08T00:00:00\+02:00 is not in UTC"),
    ({"start": "2026-01-07T00:00:00"}, r"start 2026-01-07 00:00:00 is not in UTC"),
    ({"start": "17"}, r"start is int, not a time"),
    ({"effect": "-0.5"}, r"effect -0.5 must be a number >= 0"),
    ({"effect": "nan"}, r"effect nan must be a number >= 0"),
    ({"effect": "true"}, r"effect True must be a number >= 0"),
    ({"effect": '"2x"'}, r"effect '2x' must be a number >= 0"),
    ({"kpis": '["signups", "sign_ups"]'}, r"unknown KPI id\(s\) 'sign_ups'; valid: signups, "),
    ({"kpis": "[]"}, r"kpis must be a non-empty list of KPI ids"),
    ({"kpis": '"signups"'}, r"kpis must be a non-empty list of KPI ids"),
    ({"channel": '""'}, r"channel must be a non-empty string"),
    ({"segment": "3"}, r"segment must be a non-empty string"),
    ({"name": '""'}, r"name must be a non-empty string"),
    ({"name": None, "kind": None}, r"missing name, kind; every event needs name, kind, start, end"),
])
def test_each_mistake_names_the_file_the_entry_and_the_fix(fields: dict[str, str | None],
                                                           message: str):
    text = entry(name='"Fine"') + "\n" + entry(**fields)
    with pytest.raises(CalendarError, match=message) as info:
        parse_calendar(text, "cal.toml")
    name = fields.get("name", '"Sale"')
    label = f" ({name.strip(chr(34))!r})" if name not in (None, '""') else ""
    assert str(info.value).startswith(f"cal.toml: [[event]] #2{label}: ")
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(("text", "message"), [
    ("[[event]\n", r"cal.toml: not valid TOML"),
    ('title = "x"\n', r"cal.toml: unknown top-level key\(s\) title; a calendar holds only"),
    ('[event]\nname = "x"\n', r"cal.toml: event must be an array of tables: write \[\[event\]\]"),
    ("event = [1]\n", r"cal.toml: \[\[event\]\] #1: must be a table"),
])
def test_file_level_mistakes(text: str, message: str):
    with pytest.raises(CalendarError, match=message):
        parse_calendar(text, "cal.toml")


def test_missing_file_and_environment(tmp_path: Path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(CalendarError, match=re.escape(f"{missing}: cannot read the calendar")):
        load_calendar(missing)
    assert len(Calendar.from_env({})) == 0
    assert len(Calendar.from_env({ENV_VAR: "  "})) == 0
    with pytest.raises(CalendarError, match=f"check {ENV_VAR}"):
        Calendar.from_env({ENV_VAR: str(missing)})
    path = tmp_path / "cal.toml"
    path.write_text(EXAMPLE, encoding="utf-8")
    from_env = Calendar.from_env({ENV_VAR: str(path)})
    assert list(from_env) == list(cal()) and from_env.source == str(path)


def test_from_env_reads_the_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "cal.toml"
    path.write_text(EXAMPLE, encoding="utf-8")
    monkeypatch.setenv(ENV_VAR, str(path))
    assert len(Calendar.from_env()) == 4
    monkeypatch.delenv(ENV_VAR)
    assert len(Calendar.from_env()) == 0


# ------------------------------------------------------------------------------ queries


def names(events: list[CalendarEvent]) -> list[str]:
    return [e.name for e in events]


def test_active_follows_time_kpi_segment_and_channel():
    c = cal()
    noon = T0 + 12 * HOUR
    assert names(c.active(noon, "signups")) == ["Orthodox Christmas", "Referral push"]
    assert names(c.active(noon, "signups", "all", "referral")) == ["Orthodox Christmas",
                                                                   "Referral push"]
    assert names(c.active(noon, "signups", "new_grad", "referral")) == [
        "Orthodox Christmas", "Referral push"]
    # another channel's series cannot show the referral campaign
    assert names(c.active(noon, "signups", "all", "organic")) == ["Orthodox Christmas"]
    assert names(c.active(noon, "scans")) == ["Orthodox Christmas"]
    assert c.active(noon, "mrr") == []
    # [start, end): the holiday's end is not in it, the campaign's start is
    assert names(c.active(T0 + DAY, "signups")) == ["Referral push"]
    assert names(c.active(T0 + 12 * HOUR - 0.001, "signups")) == ["Orthodox Christmas"]
    # a release on one segment: that segment's series and those over every segment
    at = T0 + 33.5 * HOUR
    assert names(c.active(at, "match_rate", "new_grad")) == ["Matcher v2"]
    assert names(c.active(at, "match_rate")) == ["Matcher v2"]
    assert names(c.active(at, "match_rate", "executive")) == []


def test_active_over_a_window_finds_a_short_maintenance():
    c = cal()
    hour = T0 + 26 * HOUR  # 02:00 on the 8th: the 20-minute upgrade is in it
    assert "Broker upgrade" not in names(c.active(hour + 30 * 60, "payments"))
    assert "Broker upgrade" in names(c.active(hour, "payments", until=hour + HOUR))
    assert "Broker upgrade" not in names(c.active(hour + HOUR, "payments",
                                                  until=hour + 2 * HOUR))
    # a zero-length window is a point query
    assert c.active(hour + 600, "payments", until=hour + 600) == c.active(hour + 600, "payments")


def test_effect_multiplies_what_moves_the_series():
    c = cal()
    noon = T0 + 12 * HOUR
    assert c.effect(noon, "signups", "all", "referral") == pytest.approx(1.2)  # 0.6 x 2.0
    assert c.effect(noon, "signups", "career_changer", "referral") == pytest.approx(1.2)
    # over every channel the campaign's factor is diluted by unknown shares: not applied
    assert c.effect(noon, "signups") == pytest.approx(0.6)
    assert c.effect(noon, "signups", "all", "organic") == pytest.approx(0.6)
    assert c.effect(noon, "scans") == pytest.approx(0.6)
    assert c.effect(noon, "payments") == 1.0   # no event on payments
    assert c.effect(T0 + 26 * HOUR + 60, "payments") == 1.0   # maintenance without effect
    assert c.effect(T0 + 3 * DAY, "signups", "all", "referral") == 1.0
    (push,) = [e for e in c if e.name == "Referral push"]
    assert push.moves("signups", "all", "referral") and not push.moves("signups")
    assert push.applies_to("signups") and not push.moves("scans", "all", "referral")


def test_effect_over_a_window_is_the_time_weighted_factor():
    c = cal()
    # 11:00-13:00 on the 7th: holiday all along, the referral campaign from 12:00
    a, b = T0 + 11 * HOUR, T0 + 13 * HOUR
    assert c.effect(a, "signups", "all", "referral", until=b) == pytest.approx(
        (0.6 + 1.2) / 2)
    # the holiday's last hour and the first after it
    assert c.effect(T0 + 23 * HOUR, "scans", until=T0 + 25 * HOUR) == pytest.approx(0.8)
    assert c.effect(T0 + 2 * DAY, "scans", until=T0 + 3 * DAY) == 1.0


def test_describe_says_what_when_and_the_expected_factor():
    xmas, push, upgrade, _ = cal()
    assert xmas.describe() == ("holiday 'Orthodox Christmas' (2026-01-07T00:00:00Z .. "
                               "2026-01-08T00:00:00Z), expected x0.6")
    assert push.describe().startswith("campaign 'Referral push' on channel referral (")
    assert upgrade.describe().endswith("2026-01-08T02:20:00Z)")


# -------------------------------------------------------------------------- round trips


def test_write_then_load_gives_the_same_events(tmp_path: Path):
    events = [*cal(), CalendarEvent('Quote " and \\ and é', "release", T0 + 0.25, T0 + 1.5,
                                    ("ltv", "cac"), "executive", "social", 1e-05)]
    path = tmp_path / "out" / "calendar.toml"
    path.parent.mkdir()
    write_calendar(path, events, header="written by a test\nsecond line")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# written by a test\n# second line\n\n[[event]]\n")
    back = load_calendar(path)
    assert list(back) == sorted(events, key=lambda e: e.start)
    assert to_toml(back) == to_toml(sorted(events, key=lambda e: e.start))
    assert to_toml([]) == ""
    assert 'start = "2026-01-07T00:00:00.250000Z"' in text


# -- the detectors and the worker use it -----------------------------------------------------------
def _signups_doc(h: int, value: float) -> dict:
    t0 = 1_767_571_200.0 + h * 3600.0   # 2026-01-05 (a Monday) + h hours
    return {"kpi": "signups", "unit": "users", "window_start": f"h{h}", "window_end": f"h{h + 1}",
            "window_start_ts": t0, "window_end_ts": t0 + 3600.0,
            "series": [{"segment": "all", "channel": "all", "value": value, "n": value}]}


def test_a_holiday_with_its_effect_moves_the_expected_value_instead_of_alerting():
    import random

    from detectors import load_config
    from detectors.watch import KpiWatch

    day = 14 * 24
    holiday = CalendarEvent("Public holiday", "holiday", _signups_doc(day, 0)["window_start_ts"],
                            _signups_doc(day + 24, 0)["window_start_ts"], ("signups",),
                            effect=0.6)
    told, blind = KpiWatch(load_config(), Calendar([holiday])), KpiWatch(load_config())
    rng = random.Random(7)
    flagged: dict[str, list[dict]] = {"told": [], "blind": []}
    for h in range(day + 24):
        mean = 60.0 * (0.6 if h >= day else 1.0)
        value = float(sum(rng.random() < mean / 200 for _ in range(200)))
        if h == day + 12:
            value = 0.0   # during the holiday, an outage all the same
        flagged["told"] += told.observe(_signups_doc(h, value))
        flagged["blind"] += blind.observe(_signups_doc(h, value))
    blind_hours = {a["window_start"] for a in flagged["blind"]}
    assert len(blind_hours) >= 3, "a 40 % dip all day should alert without the calendar"
    # told: only the outage, with an expected value moved by the holiday, naming it
    [outage] = flagged["told"]
    assert outage["window_start"] == f"h{day + 12}" and outage["value"] == 0.0
    assert 30.0 < outage["expected"] < 42.0          # 0.6 of ~60
    assert outage["calendar"] and "Public holiday" in outage["calendar"][0]
    assert "x0.6" in outage["calendar"][0]
    # the forecaster learned the holiday's values over 0.6: it did not learn a dip
    told_level = told.kpis["signups"].watchers[("all", "all")].model.level
    blind_level = blind.kpis["signups"].watchers[("all", "all")].model.level
    fresh = KpiWatch(load_config())
    rng = random.Random(7)
    for h in range(day):
        fresh.observe(_signups_doc(h, float(sum(rng.random() < 60 / 200 for _ in range(200)))))
    base = fresh.kpis["signups"].watchers[("all", "all")].model.level
    assert abs(told_level - base) < abs(blind_level - base)


def test_the_worker_rereads_a_calendar_file_that_changed_and_keeps_the_last_good(tmp_path: Path):
    from detectors.calendar import CalendarFile

    path = tmp_path / "calendar.toml"
    write_calendar(path, [])
    errors: list[str] = []
    now = [0.0]
    f = CalendarFile(path, check_every_s=2.0, on_error=lambda e: errors.append(str(e)),
                     clock=lambda: now[0])
    assert len(f.current()) == 0
    write_calendar(path, [CalendarEvent("Deploy", "release", 0.0, 600.0)])
    assert len(f.current()) == 0          # not checked again before check_every_s
    now[0] = 3.0
    assert [e.name for e in f.current()] == ["Deploy"]
    path.write_text("[[event]]\nname = 'x'\n")   # broken: missing keys
    now[0] = 6.0
    assert [e.name for e in f.current()] == ["Deploy"] and len(errors) == 1
    assert "missing kind, start, end" in errors[0] and str(path) in errors[0]
    now[0] = 9.0
    f.current()
    assert len(errors) == 1               # one report per change, not per check


def test_a_campaign_moves_its_channel_and_dilutes_into_the_series_that_hold_it():
    import random

    from detectors import load_config
    from detectors.watch import KpiWatch

    day = 14 * 24
    doc0 = _signups_doc(day, 0)
    push = CalendarEvent("Social push", "campaign", doc0["window_start_ts"],
                         doc0["window_start_ts"] + 6 * 3600, ("signups",), channel="social",
                         effect=2.0)
    told, blind = KpiWatch(load_config(), Calendar([push])), KpiWatch(load_config())
    rng = random.Random(3)
    out: dict[str, list[dict]] = {"told": [], "blind": []}
    for h in range(day + 6):
        social = float(sum(rng.random() < 0.25 for _ in range(1000)))
        other = float(sum(rng.random() < 0.75 for _ in range(1000)))
        if h >= day:
            social *= 2
        doc = _signups_doc(h, 0)
        doc["series"] = [{"segment": "all", "channel": ch, "value": v, "n": v}
                         for ch, v in (("all", social + other), ("social", social),
                                       ("organic", other))]
        out["told"] += told.observe(doc)
        out["blind"] += blind.observe(doc)
    blind_series = {(a["channel"], a["window_start"]) for a in out["blind"]}
    assert ("social", f"h{day}") in blind_series and ("all", f"h{day}") in blind_series
    assert out["told"] == []
