"""Alert lifecycle: anomalies in, alert state changes (open → updated → resolved) out.

:class:`AlertManager` groups related anomalies into incidents. An anomaly joins an alert when
its series already belongs to it, or when its windows overlap (or directly follow) the alert's
abnormal windows and its KPI shares an incident family with the alert (``alerting.evidence``:
a payment outage moves payment_failure_rate, payments, revenue and conversion_rate together).
The alert is led by its most significant series (severity, then score, then overall series,
then relative change).

- ``open``: a critical incident opens at once, as its first firing anomaly arrives; a warning
  incident that fires (``FiringRule``) opens when its window closes, so related anomalies of
  the same window (published just before the marker) are in its first message and lead it.
- Later anomalies of an open alert are folded in silently; when the window closes
  (``on_window_closed``) one ``updated`` change per alert says what changed.
- ``resolved`` after ``resolve_after`` consecutive clean windows. A series that goes bad again
  within ``reopen_within`` windows of a resolution reopens the same alert (flapping) and doubles
  the clean windows it needs next time (hold-down), so a flapping series stays one alert.

Time is event time, passed in. State is plain data: the manager pickles.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field

from alerting.evidence import families_of
from alerting.policies import SEVERITY_RANK, Deduper, FiringRule, relative_change
from core.timefmt import iso_utc
from detectors.watch import ADDITIVE_KPIS

__all__ = ["CONCENTRATED_SHARE", "Alert", "AlertChange", "AlertManager", "lead_and_scope",
           "series_key", "significance"]


def series_key(anomaly: dict) -> str:
    return f"{anomaly['kpi']}|{anomaly['segment']}|{anomaly['channel']}"


def significance(anomaly: dict) -> tuple[int, float, int, float]:
    """Sort key: the most significant anomaly of an alert leads it."""
    overall = int(anomaly.get("segment") == "all" and anomaly.get("channel") == "all")
    return (SEVERITY_RANK.get(anomaly.get("severity", ""), 0), round(float(anomaly["score"]), 3),
            overall, min(relative_change(anomaly), 1e9))


CONCENTRATED_SHARE = 0.6
"""A slice holding at least this share of an overall series' change is where the incident is
(the alert then leads with that slice, if it is abnormal itself); below it the change is spread."""


def lead_and_scope(members: dict[str, dict]) -> tuple[dict, dict]:
    """The series an alert leads with, and the scope its headline names.

    The KPI is that of the most significant member; the series is the broadest one that
    explains the change: the KPI's overall series when it is a member, unless its contribution
    analysis puts at least :data:`CONCENTRATED_SHARE` of the change on one segment or channel,
    well beyond that slice's share of the volume (a segment with 70 % of the traffic has 70 %
    of any change that hits everyone alike). Leading with whichever slice scored highest made an
    outage that hit everyone read as if only new grads were affected. ``scope``: ``segment``
    and ``channel`` of where the change is, ``share`` of the overall change there (None when
    not known) and ``spread`` (true: the contribution analysis finds no such slice).
    """
    top = max(members.values(), key=significance)
    kpi = top["kpi"]
    overall = members.get(f"{kpi}|all|all")
    if overall is None:
        return top, {"segment": top["segment"], "channel": top["channel"], "share": None,
                     "spread": False}
    rows = [c for c in overall.get("contributors") or [] if _num(c.get("share")) is not None]
    concentrated = [c for c in rows if _concentrated(c, overall)]
    if concentrated:
        best = max(concentrated, key=lambda c: _num(c.get("share")) or 0.0)
        where = {"segment": str(best.get("segment", "all")),
                 "channel": str(best.get("channel", "all")),
                 "share": round(_num(best.get("share")) or 0.0, 3), "spread": False}
        return members.get(f"{kpi}|{where['segment']}|{where['channel']}", overall), where
    return overall, {"segment": "all", "channel": "all", "share": None, "spread": bool(rows)}


MIN_SCOPE_EVENTS = 20
"""Fewer events than this behind the overall series (its ``n``, or an additive KPI's expected
count) say nothing about where a change is: 4 failed payments of 4 can all be on one channel by
chance, and the headline would then blame that channel for an outage that hit everyone."""


def _concentrated(c: dict, overall: dict) -> bool:
    """Whether one contributor row holds most of the overall change, beyond its size."""
    share = _num(c.get("share")) or 0.0
    if share < CONCENTRATED_SHARE:
        return False
    events = _num(overall.get("expected") if overall["kpi"] in ADDITIVE_KPIS
                  else overall.get("n"))
    if events is not None and events < MIN_SCOPE_EVENTS:
        return False
    size = _size(c, overall)
    return size is None or share - size >= CONCENTRATED_SHARE - 0.4


def _size(c: dict, overall: dict) -> float | None:
    """The slice's share of the overall volume: of the expected value for an additive KPI, of
    the sample (``share * total / delta``, how the detector weighed it) for a ratio."""
    e_all, v_all = _num(overall.get("expected")), _num(overall.get("value"))
    e, delta, share = _num(c.get("expected")), _num(c.get("delta")), _num(c.get("share"))
    if None in (e_all, v_all, e, delta, share):
        return None
    assert e_all is not None and v_all is not None and e is not None
    assert delta is not None and share is not None
    if overall["kpi"] in ADDITIVE_KPIS:
        return e / e_all if e_all > 0 else None
    return share * (v_all - e_all) / delta if delta else None


def _num(x: object) -> float | None:
    try:
        v = float(x)   # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return v if v == v else None


STILL_ABNORMAL_EVERY = 6
"""An alert whose lead stays abnormal gets an update every this many windows, not each one."""


@dataclass
class AlertChange:
    """One state change of one alert; ``alert`` is a JSON-ready snapshot (see ``snapshot``)."""

    status: str  # "open", "updated" or "resolved"
    alert: dict
    reason: str


@dataclass
class Alert:
    id: str
    families: frozenset[str]
    started_ts: float
    window_s: float
    resolve_after: int
    status: str = "pending"  # pending, open or resolved
    members: dict[str, dict] = field(default_factory=dict)  # series key -> latest anomaly
    streaks: dict[str, int] = field(default_factory=dict)  # consecutive abnormal windows
    last_end_ts: float = 0.0  # end of the latest abnormal window of any member
    clean_windows: int = 0
    version: int = 0
    reasons: list[str] = field(default_factory=list)  # changes not yet reported
    joined: list[str] = field(default_factory=list)  # series that joined, not yet reported
    joined_series: list[dict] = field(default_factory=list)  # the same as {kpi, segment, channel}
    changes: list[str] = field(default_factory=list)  # codes of what changed, not yet reported
    streak: int = 0  # the lead's abnormal windows in a row, when "still" is reported
    previous: dict | None = None  # the lead ({kpi, segment, channel, value}) at the last message
    ready: bool = False  # a pending warning incident that fires when its window closes
    reopened: int = 0
    resolved_ts: float | None = None
    explanation: str = ""
    explanation_source: str = "template"
    feedback: list[dict] = field(default_factory=list)
    peak: str = "warning"  # the highest severity it has had: see ``severity``
    peak_kpi: str | None = None  # the KPI whose anomaly reached ``peak``: see ``leading``

    def __setstate__(self, state: dict) -> None:
        # alerts pickled before a field existed get its default
        self.__dict__.update({"joined_series": [], "changes": [], **state})

    @property
    def lead(self) -> dict:
        return lead_and_scope(self.leading())[0]

    def leading(self) -> dict[str, dict]:
        """The members the lead is picked from: all of them, unless none is as severe as the
        alert (it keeps its peak, see ``severity``); then those of the KPI that reached the
        peak. A critical outage is not led by a series now inside its normal band: 94% of
        payments failing leads, not "1 payment (expected 19)", which reads as within normal."""
        rank = SEVERITY_RANK.get
        top = rank(self.severity, 0)
        if self.peak_kpi is None or any(rank(m.get("severity", ""), 0) >= top
                                        for m in self.members.values()):
            return self.members
        return {k: m for k, m in self.members.items()
                if m["kpi"] == self.peak_kpi} or self.members

    @property
    def severity(self) -> str:
        """The highest severity of its series now, or the highest it has had: an alert does not
        calm down while its incident goes on. A few payments in the next window, all failing, are
        weaker evidence than the window that made it critical, not a milder outage; "100 %
        failing, warning" after "89 % failing, critical" reads as nonsense. It ends by resolving."""
        now = max((m.get("severity", "warning") for m in self.members.values()),
                  key=lambda s: SEVERITY_RANK.get(s, 0))
        return max(now, self.peak, key=lambda s: SEVERITY_RANK.get(s, 0))


class AlertManager:
    """Turns anomaly events and window-closed markers into :class:`AlertChange` lists.

    Parameters
    ----------
    resolve_after
        Clean windows in a row before an alert resolves.
    reopen_within
        Windows after a resolution during which the same series reopens the alert.
    max_resolve_after
        Cap of the hold-down that doubles on every reopen.
    firing
        Minimum change and duration before an incident fires.
    dedupe
        Drops a second copy of the same anomaly (same series, window and detector).
    """

    def __init__(self, resolve_after: int = 3, reopen_within: int = 3,
                 max_resolve_after: int = 12, firing: FiringRule | None = None,
                 dedupe: Deduper | None = None):
        if resolve_after < 1 or reopen_within < 0 or max_resolve_after < resolve_after:
            raise ValueError("need resolve_after >= 1, reopen_within >= 0 and "
                             "max_resolve_after >= resolve_after")
        self.resolve_after = resolve_after
        self.reopen_within = reopen_within
        self.max_resolve_after = max_resolve_after
        self.firing = firing if firing is not None else FiringRule()
        self.dedupe = dedupe if dedupe is not None else Deduper()
        self.active: dict[str, Alert] = {}  # pending and open alerts
        self.resolved: dict[str, Alert] = {}  # kept while they may still reopen
        self.last_closed_ts = float("-inf")

    # -- inputs ---------------------------------------------------------------------------

    def on_anomaly(self, anomaly: dict, now_event_ts: float | None = None) -> list[AlertChange]:
        """Take one anomaly event (docs/anomalies.md); ``now_event_ts`` defaults to its end."""
        if now_event_ts is None:
            now_event_ts = anomaly.get("as_of_ts") or anomaly["window_end_ts"]
        now = float(now_event_ts)
        key = series_key(anomaly)
        dedupe_key = f"{key}|{anomaly['window_start_ts']}|{anomaly.get('detector', '')}"
        if not self.dedupe.first_time(dedupe_key, float(anomaly["window_end_ts"])):
            return []
        if not self.firing.keeps(anomaly):
            return []
        anomaly = {k: v for k, v in anomaly.items() if k != "kind"}
        alert = self._find(anomaly)
        reopened = False
        if alert is None:
            alert = self._reopenable(anomaly)
            if alert is not None:
                reopened = True
                del self.resolved[alert.id]
                alert.status, alert.resolved_ts, alert.clean_windows = "open", None, 0
                alert.reopened += 1
                alert.resolve_after = min(alert.resolve_after * 2, self.max_resolve_after)
                self.active[alert.id] = alert
        if alert is None:
            ws, we = float(anomaly["window_start_ts"]), float(anomaly["window_end_ts"])
            alert = Alert(id=_alert_id(key, ws), families=families_of(anomaly["kpi"]),
                          started_ts=ws, window_s=max(we - ws, 1.0),
                          resolve_after=self.resolve_after)
            self.active[alert.id] = alert
        self._add(alert, anomaly)
        if alert.status == "pending":
            alert.ready = alert.ready or self.firing.fires(anomaly, alert.streaks[key])
            if alert.ready and alert.severity == "critical":
                return [self._open(alert, now)]
            return []
        if reopened:
            alert.version += 1
            self._forget(alert)
            return [self._change(alert, "updated", f"reopened: {anomaly['kpi']} is abnormal "
                                 "again (flapping)", now, ["reopened"])]
        return []

    def on_window_closed(self, window_end_ts: float) -> list[AlertChange]:
        """A window ended at ``window_end_ts`` closed: report changes, count clean windows."""
        if window_end_ts <= self.last_closed_ts:
            return []
        self.last_closed_ts = window_end_ts
        changes = []
        for alert in list(self.active.values()):
            if alert.status == "pending" and alert.ready:
                changes.append(self._open(alert, window_end_ts))
                continue
            if alert.last_end_ts >= window_end_ts:
                alert.clean_windows = 0
            else:
                alert.clean_windows += 1
                if alert.status == "pending":
                    del self.active[alert.id]
                    continue
                if alert.clean_windows >= alert.resolve_after:
                    alert.status, alert.resolved_ts = "resolved", window_end_ts
                    alert.version += 1
                    self._forget(alert)
                    del self.active[alert.id]
                    self.resolved[alert.id] = alert
                    changes.append(self._change(
                        alert, "resolved", f"back to normal for {alert.clean_windows} windows",
                        window_end_ts, ["resolved"]))
                    continue
            if alert.status == "open" and (alert.reasons or alert.joined):
                alert.version += 1
                reasons = list(dict.fromkeys(alert.reasons))
                if alert.joined:
                    reasons.append("joined: " + ", ".join(dict.fromkeys(alert.joined)))
                reason = "; ".join(reasons)
                codes = list(dict.fromkeys(alert.changes + (["joined"] if alert.joined else [])))
                joined = alert.joined_series
                self._forget(alert)
                changes.append(self._change(alert, "updated", reason, window_end_ts, codes,
                                            joined))
        for alert in list(self.resolved.values()):
            assert alert.resolved_ts is not None
            if window_end_ts - alert.resolved_ts > self.reopen_within * alert.window_s:
                del self.resolved[alert.id]
        self.dedupe.prune(window_end_ts)
        return changes

    # -- outputs the service records on an alert ------------------------------------------

    def get(self, alert_id: str) -> Alert | None:
        return self.active.get(alert_id) or self.resolved.get(alert_id)

    def set_explanation(self, alert_id: str, text: str, source: str) -> None:
        alert = self.get(alert_id)
        if alert is not None:
            alert.explanation, alert.explanation_source = text, source

    def add_feedback(self, alert_id: str, action: str, user: str) -> None:
        alert = self.get(alert_id)
        if alert is not None:
            alert.feedback.append({"action": action, "user": user})

    def snapshot(self, alert_id: str, reason: str = "") -> AlertChange | None:
        """The current state of an alert as an ``updated`` (or ``resolved``) change."""
        alert = self.get(alert_id)
        if alert is None or alert.status == "pending":
            return None
        status = "resolved" if alert.status == "resolved" else "updated"
        return self._change(alert, status, reason, alert.last_end_ts, report=False)

    # -- internals ------------------------------------------------------------------------

    def _find(self, anomaly: dict) -> Alert | None:
        key = series_key(anomaly)
        ws, we = float(anomaly["window_start_ts"]), float(anomaly["window_end_ts"])
        fams = families_of(anomaly["kpi"])
        best = None
        for alert in self.active.values():
            if key in alert.members:
                return alert
            overlaps = ws <= alert.last_end_ts and we > alert.started_ts - alert.window_s
            if overlaps and fams & alert.families:
                if best is None or alert.last_end_ts > best.last_end_ts:
                    best = alert
        return best

    def _reopenable(self, anomaly: dict) -> Alert | None:
        key = series_key(anomaly)
        ws = float(anomaly["window_start_ts"])
        for alert in self.resolved.values():
            assert alert.resolved_ts is not None
            if key in alert.members and ws - alert.resolved_ts <= (
                    self.reopen_within * alert.window_s):
                return alert
        return None

    def _add(self, alert: Alert, anomaly: dict) -> None:
        key = series_key(anomaly)
        ws, we = float(anomaly["window_start_ts"]), float(anomaly["window_end_ts"])
        old = alert.members.get(key)
        old_lead = series_key(alert.lead) if alert.members else None
        old_severity = alert.severity if alert.members else None
        if old is None:
            alert.streaks[key] = 1
            slice_ = ("" if anomaly["segment"] == anomaly["channel"] == "all"
                      else f" ({anomaly['segment']}/{anomaly['channel']})")
            alert.joined.append(f"{anomaly['kpi']}{slice_}")
            alert.joined_series.append({k: anomaly[k] for k in ("kpi", "segment", "channel")})
        elif float(old["window_start_ts"]) == ws:  # a second detector on the same point
            if old.get("early") and not anomaly.get("early"):
                # the window's final numbers replace its running ones, whatever their score
                alert.reasons.append(f"{anomaly['kpi']}: the window closed, final numbers")
                alert.changes.append("final")
            elif significance(anomaly) <= significance(old):
                return
        else:
            follows = abs(float(old["window_end_ts"]) - ws) < 1e-6
            alert.streaks[key] = alert.streaks.get(key, 0) + 1 if follows else 1
            streak = alert.streaks[key]
            if old_lead == key and streak % STILL_ABNORMAL_EVERY == 0:
                # no thread reply per window for a long incident: a reminder every few windows
                alert.reasons.append(f"{anomaly['kpi']} still abnormal after {streak} windows")
                alert.changes.append("still")
                alert.streak = streak
        alert.members[key] = copy.deepcopy(anomaly)
        alert.last_end_ts = max(alert.last_end_ts, we)
        alert.started_ts = min(alert.started_ts, ws)
        alert.clean_windows = 0
        alert.peak = alert.severity
        if SEVERITY_RANK.get(anomaly.get("severity", ""), 0) >= SEVERITY_RANK.get(alert.peak, 0):
            alert.peak_kpi = anomaly["kpi"]
        if old_severity is not None and alert.severity != old_severity:
            alert.reasons.append(f"severity now {alert.severity}")
            alert.changes.append("severity")
        if old_lead is not None and series_key(alert.lead) != old_lead:
            alert.reasons.append(f"now led by {alert.lead['kpi']}")
            alert.changes.append("lead")

    def _open(self, alert: Alert, now: float) -> AlertChange:
        alert.status, alert.version, alert.ready = "open", 1, False
        self._forget(alert)
        return self._change(alert, "open", "opened", now, ["opened"])

    @staticmethod
    def _forget(alert: Alert) -> None:
        """Changes are reported: start collecting the next message's."""
        alert.reasons, alert.joined, alert.joined_series, alert.changes = [], [], [], []

    def _change(self, alert: Alert, status: str, reason: str, now: float,
                codes: list[str] | None = None, joined: list[dict] | None = None,
                report: bool = True) -> AlertChange:
        """The snapshot of ``alert``; ``codes`` and ``joined`` say what changed since the last
        message (``report``: this is a message, so the next one compares with it)."""
        lead, scope = lead_and_scope(alert.leading())
        lead_key = series_key(lead)
        related = [
            {k: m.get(k) for k in ("kpi", "segment", "channel", "severity", "value", "expected",
                                   "score", "direction", "window_start")}
            for _, m in sorted(((k, m) for k, m in alert.members.items() if k != lead_key),
                               key=lambda km: significance(km[1]), reverse=True)
        ]
        snap = {
            "id": alert.id,
            "status": status,
            "kpi": lead["kpi"],
            "segment": lead["segment"],
            "channel": lead["channel"],
            "severity": alert.severity,
            "window_start": lead.get("window_start") or iso_utc(float(lead["window_start_ts"])),
            "window_end": lead.get("window_end") or iso_utc(float(lead["window_end_ts"])),
            "window_start_ts": float(lead["window_start_ts"]),
            "window_end_ts": float(lead["window_end_ts"]),
            "value": lead["value"],
            "expected": lead["expected"],
            "lower": lead.get("lower"),
            "upper": lead.get("upper"),
            "score": lead["score"],
            "direction": lead.get("direction"),
            "unit": lead.get("unit", ""),
            "detector": lead.get("detector", ""),
            "n": lead.get("n"),
            # an early anomaly: the open window's running numbers after elapsed_minutes
            "early": bool(lead.get("early")),
            "as_of_ts": lead.get("as_of_ts"),
            "elapsed_minutes": lead.get("elapsed_minutes"),
            "span_start_ts": lead.get("span_start_ts"),
            "calendar": list(lead.get("calendar") or []),   # known events during its window
            "since": iso_utc(alert.started_ts),
            "since_ts": alert.started_ts,
            "duration_windows": max(round((alert.last_end_ts - alert.started_ts)
                                          / alert.window_s), 1),
            "explanation": alert.explanation,
            "explanation_source": alert.explanation_source,
            "related": related,
            "contributors": list(lead.get("contributors") or [])[:5],
            "history": list(lead.get("history") or []),
            "version": alert.version,
            "reason": reason,
            "reopened": alert.reopened,
            "feedback": list(alert.feedback),
            "event_ts": now,
            # what changed, in data rather than words: the message owns the words
            "scope": scope,
            "changes": list(codes or []),
            "joined": list(joined or []),
            "previous": dict(alert.previous) if alert.previous else None,
            "streak": alert.streak or None,
        }
        if report:
            alert.previous = {k: lead.get(k) for k in ("kpi", "segment", "channel", "value")}
        if status == "resolved":
            snap["resolved_at"] = iso_utc(float(alert.resolved_ts or now))
        return AlertChange(status=status, alert=snap, reason=reason)


def _alert_id(key: str, window_start_ts: float) -> str:
    """Deterministic from the first anomaly, so a replay names its alerts the same."""
    return hashlib.sha1(f"{key}|{window_start_ts}".encode()).hexdigest()[:12]
