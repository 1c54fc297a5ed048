"""Hour-by-hour event generation for the simulated job-search SaaS.

The simulation only ever advances in whole UTC hours (the first one may start late), in order,
from one seeded ``random.Random``; ``advance`` hands out buffered events up to the requested time.
So the stream depends only on (seed, start_ts, scenario, incident_range, model, benign plan),
never on how callers slice time. The ``none`` scenario's benign events (simulator/benign.py)
include late ones: they arrive up to 8 minutes after their ``ts``, so ``advance`` hands out
events in order of arrival, which is ``ts`` order for all others. Users and subscriptions are
plain parallel lists and events plain dicts, because the demo generates weeks of history at full
speed before going live.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from itertools import accumulate
from operator import itemgetter
from typing import Any

from core.vocabulary import CHANNELS, PLANS, SEGMENTS
from detectors.calendar import CalendarEvent
from simulator.benign import (
    DELAYED_KINDS,
    LATE_DELAY_S,
    Benign,
    HourEffects,
    after_gap,
    benign_calendar,
    hour_effects,
    plan_benign,
)
from simulator.model import BusinessModel, diurnal_weights, weekly_factor
from simulator.scenarios import Incident, plan_incidents

__all__ = ["Simulation", "poisson"]

_HOUR = 3600.0
_DAY = 86400.0
_FIRST, _RENEW = 0, 1  # kinds of scheduled payment attempts
_REFERRAL = CHANNELS.index("referral")
_PERIOD = (30 * _DAY, 365 * _DAY)  # billing period per plan index
_TS = itemgetter("ts")

Event = dict[str, Any]
Window = tuple[Incident, float, float]  # an incident and its overlap with the hour at hand


def poisson(rnd: Callable[[], float], gauss: Callable[[float, float], float], lam: float) -> int:
    """A Poisson draw: Knuth's product method, normal approximation for large means.

    >>> r = random.Random(3)
    >>> draws = [poisson(r.random, r.gauss, 4.0) for _ in range(20000)]
    >>> round(sum(draws) / len(draws), 1), poisson(r.random, r.gauss, 0.0)
    (4.0, 0)
    """
    if lam <= 0.0:
        return 0
    if lam > 40.0:
        return max(0, int(gauss(lam, math.sqrt(lam)) + 0.5))
    limit, k, p = math.exp(-lam), 0, rnd()
    while p > limit:
        k += 1
        p *= rnd()
    return k


def _benign_on(scenario: str, benign: bool | None, explicit_range: bool) -> bool:
    if benign and scenario != "none":
        raise ValueError(f"benign events are for the none scenario, not {scenario!r}")
    return scenario == "none" and explicit_range if benign is None else benign


def _benign_signups(times: list[float], channel: str, lam: float, t0: float, t1: float,
                    ben: HourEffects, rnd: Callable[[], float],
                    gauss: Callable[[float, float], float]) -> list[float]:
    """One channel's signup times of ``[t0, t1)`` with campaigns, trends and holidays."""
    for ch, a, b, mag in ben.campaigns:
        if ch in ("all", channel):
            n = poisson(rnd, gauss, lam * (mag - 1.0) * (b - a) / _HOUR)
            times.extend(a + (b - a) * rnd() for _ in range(n))
    if ben.trend_s > 0:
        n = poisson(rnd, gauss, lam * ben.trend_s / _HOUR)
        times.extend(t0 + (t1 - t0) * rnd() for _ in range(n))
    if ben.holidays:
        times = [ts for ts in times if rnd() < ben.traffic(ts)]
    return times


def _through_gaps(events: list[Event], ben: HourEffects) -> list[Event]:
    """The events that get through the gaps: tracking events in one are lost, the others
    (:data:`~simulator.benign.DELAYED_KINDS`) arrive just after it."""
    out = []
    for e in events:
        gap = ben.in_gap(e["ts"])
        if gap is None:
            out.append(e)
        elif e["kind"] in DELAYED_KINDS:
            e["ts"] = after_gap(e["ts"], gap)
            out.append(e)
    return out


def _overlaps(incidents: list[Incident], t0: float, t1: float) -> list[Window]:
    """Incidents touching [t0, t1), each with the overlapping interval."""
    return [(i, max(t0, i.start), min(t1, i.end)) for i in incidents if i.start < t1 and i.end > t0]


class Simulation:
    """A deterministic stream of business events (docs/events.md) with labelled incidents.

    Parameters
    ----------
    seed
        Seeds every random draw; the same arguments give the same stream.
    start_ts
        Epoch seconds of the first event; the business is already running then.
    scenario
        One of ``SCENARIOS``; its incidents are in ``.incidents``.
    incident_range
        Where incidents may fall; default days 14 to 35 after ``start_ts``.
    model
        Rates of the business (default ``BusinessModel()``; ``BusinessModel().scaled(10)`` for
        a business ten times bigger).
    difficulty
        ``"normal"`` (large incidents) or ``"subtle"`` (small, short ones): see ``DIFFICULTIES``.
    benign
        Place the ``none`` scenario's benign events (:func:`~simulator.benign.plan_benign`) in
        ``incident_range``; they are in ``.benign``, what people know of them in
        :meth:`calendar`. Default: when the scenario is ``none`` and ``incident_range`` is given
        (not for the default range, which lies in the clean history most callers want).
        ``.benign`` is read hour by hour, so it can be set after a pickled warm-up.

    >>> sim = Simulation(seed=7, start_ts=1795255200.0)
    >>> events = sim.advance(1795255200.0 + 3600)
    >>> sorted({e["kind"] for e in events})
    ['activity', 'payment', 'scan', 'signup', 'spend']
    >>> events == sorted(events, key=lambda e: e["ts"]), sim.advance(1795255200.0 + 3600)
    (True, [])
    """

    def __init__(self, seed: int, start_ts: float, scenario: str = "none",
                 incident_range: tuple[float, float] | None = None,
                 model: BusinessModel | None = None, difficulty: str = "normal",
                 benign: bool | None = None) -> None:
        self.seed = seed
        self.start_ts = start_ts
        self.scenario = scenario
        self.incident_range = incident_range
        self.model = model if model is not None else BusinessModel()
        self.difficulty = difficulty
        lo, hi = incident_range or (start_ts + 14 * _DAY, start_ts + 35 * _DAY)
        self.incidents: list[Incident] = plan_incidents(
            scenario, lo, hi, random.Random(f"incidents:{seed}"), difficulty)
        on = _benign_on(scenario, benign, incident_range is not None)
        self.benign: list[Benign] = plan_benign(seed, lo, hi) if on else []
        # event ids of a normal run stay what they were before difficulties existed
        key: tuple = (seed, start_ts, scenario, incident_range, self.model)
        tag = repr(key if difficulty == "normal" else (*key, difficulty)).encode()
        self._tag = hashlib.blake2b(tag, digest_size=4).hexdigest()
        self._rng = random.Random(seed)
        self._generated_until = start_ts
        self._buffer: list[Event] = []
        self._pos = 0
        self._carry: list[Event] = []  # events already drawn that belong to a later hour
        self._late: list[tuple[float, int, Event]] = []  # heap of (arrival, seq, late event)
        self._late_seq = 0
        self._late_rng = random.Random(f"late:{seed}")  # which events are late: no other draws
        self._heap: list[tuple[float, int, int, int, int, int, int]] = []
        self._seq = 0
        self._day = -1
        self._plan: list[list[tuple[float, int]]] = []
        m = self.model
        self._diurnal = diurnal_weights(m.diurnal_amplitude, m.peak_hour_utc)
        self._diurnal_cum = list(accumulate(self._diurnal))
        self._seg_cum = list(accumulate(m.segment_shares))
        self._conv = [[m.conversion_probability(s, c) for c in range(len(CHANNELS))]
                      for s in range(len(SEGMENTS))]
        self._prices = (m.monthly_price, m.annual_price)
        # users: parallel lists indexed by user number
        self._uid: list[str] = []
        self._seg: list[int] = []
        self._chan: list[int] = []
        self._act: list[float] = []
        self._plan_of: list[int] = []  # -1 free, else index into PLANS
        self._gen: list[int] = []  # bumped when a subscription ends; stale renewals are skipped
        self._pending: list[bool] = []  # a first payment is scheduled
        self._paid_ever: list[bool] = []  # only a user's very first payment has first=true
        self._last_pay: list[float] = []
        self._active: list[int] = []  # users with a live subscription
        self._active_pos: list[int] = []
        self._advocates: list[int] = []
        self._populate()

    # ------------------------------------------------------------------ public

    def plan(self, scenario: str, incident_range: tuple[float, float],
             benign: bool | None = None) -> list[Incident]:
        """Place ``scenario``'s incidents in ``incident_range``, from now on.

        For runs whose live span is only known once their history has been generated (the
        demo); only hours not generated yet can hold them. ``none`` gets its benign events
        there (``benign``: as for the constructor, default on for ``none``).
        """
        if incident_range[0] < self._generated_until:
            raise ValueError("incidents must start after the events generated so far")
        self.scenario, self.incident_range = scenario, incident_range
        self.incidents = plan_incidents(scenario, *incident_range,
                                        random.Random(f"incidents:{self.seed}"), self.difficulty)
        on = _benign_on(scenario, benign, True)
        self.benign = plan_benign(self.seed, *incident_range) if on else []
        return self.incidents

    def calendar(self) -> list[CalendarEvent]:
        """What people would know of ``.benign`` (holiday, campaign, gap): the entries of the
        calendar file (:func:`detectors.calendar.write_calendar`)."""
        return benign_calendar(self.benign)

    def advance(self, until_ts: float) -> list[Event]:
        """Every event that arrives in [previous ``until_ts``, ``until_ts``), in arrival order.

        An event arrives at its ``ts``, so this is every event with ``ts`` in that interval,
        sorted by ``ts``; except the benign late events, which arrive 1 to 8 minutes after
        their ``ts`` and so come out of order, possibly in a later call. Their ``ts`` is then
        at most 8 minutes before the previous ``until_ts``: a KPI engine whose watermark is
        that time and whose lateness is 10 minutes (the worker's) still counts them.
        """
        while self._generated_until < until_ts:
            t0 = self._generated_until
            t1 = (math.floor(t0 / _HOUR) + 1) * _HOUR
            self._buffer.extend(self._hour(t0, t1))
            self._generated_until = t1
        cut = bisect_left(self._buffer, until_ts, lo=self._pos, key=_TS)
        out = self._buffer[self._pos:cut]
        self._pos = cut
        if self._pos > 4096:
            del self._buffer[:self._pos]
            self._pos = 0
        if self._late and self._late[0][0] < until_ts:
            keyed = [(e["ts"], 0, i, e) for i, e in enumerate(out)]
            while self._late and self._late[0][0] < until_ts:
                arrival, seq, e = heapq.heappop(self._late)
                keyed.append((arrival, 1, seq, e))
            keyed.sort(key=itemgetter(0, 1, 2))
            out = [k[3] for k in keyed]
        return out

    # ------------------------------------------------------------- population

    def _add_user(self, segment: int, channel: int) -> int:
        m, rnd = self.model, self._rng.random
        u = len(self._uid)
        self._uid.append(f"u{u}")
        self._seg.append(segment)
        self._chan.append(channel)
        lo, hi = m.engaged_activity
        self._act.append(m.dormant_activity if rnd() < m.dormant_share else lo + (hi - lo) * rnd())
        self._plan_of.append(-1)
        self._gen.append(0)
        self._pending.append(False)
        self._paid_ever.append(False)
        self._last_pay.append(-math.inf)
        self._active_pos.append(-1)
        if rnd() < m.advocate_share:
            self._advocates.append(u)
        return u

    def _draw_segment(self) -> int:
        return min(bisect_right(self._seg_cum, self._rng.random()), len(SEGMENTS) - 1)

    def _populate(self) -> None:
        """The business at ``start_ts``: users, and monthly subscribers due within 30 days."""
        m, rng = self.model, self._rng
        ch_cum = list(accumulate(m.channel_shares))
        for _ in range(m.initial_users):
            channel = min(bisect_right(ch_cum, rng.random()), len(CHANNELS) - 1)
            self._add_user(self._draw_segment(), channel)
        for u in rng.sample(range(m.initial_users), m.initial_subscriptions):
            self._activate(u, 0)
            self._schedule(self.start_ts + rng.random() * _PERIOD[0], _RENEW, u, 0, 0)
        # The business did not start today: users who signed up in the last conversion window
        # are still converting, so conversions (and CAC) do not start from zero.
        window = m.conversion_window_days * _DAY
        free = [u for u in range(m.initial_users) if self._plan_of[u] < 0]
        for u in rng.sample(free, min(len(free), int(m.signups_per_day
                                                      * m.conversion_window_days))):
            born = self.start_ts - rng.random() * window
            if rng.random() < self._conv[self._seg[u]][self._chan[u]]:
                due = born + 60.0 + rng.random() ** 2 * window
                if due > self.start_ts:
                    self._pending[u] = True
                    self._schedule(due, _FIRST, u, 0, 1 if rng.random() < m.annual_share else 0)

    def _activate(self, u: int, plan: int) -> None:
        self._plan_of[u] = plan
        self._paid_ever[u] = True
        self._active_pos[u] = len(self._active)
        self._active.append(u)

    def _deactivate(self, u: int) -> None:
        pos, last = self._active_pos[u], self._active[-1]
        self._active[pos] = last
        self._active_pos[last] = pos
        self._active.pop()
        self._active_pos[u] = -1
        self._plan_of[u] = -1
        self._gen[u] += 1

    def _schedule(self, due: float, kind: int, u: int, attempt: int, plan: int) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, kind, u, self._gen[u], attempt, plan))

    # ------------------------------------------------------------------ hours

    def _plan_day(self, day: int) -> None:
        """Decide who is active on a UTC day and when their sessions start."""
        m, rnd = self.model, self._rng.random
        wf = weekly_factor(day, m.weekend_factor)
        boost, extra = m.paid_activity_boost, m.extra_session_probability
        cum, total = self._diurnal_cum, self._diurnal_cum[-1]
        base = day * _DAY
        plan: list[list[tuple[float, int]]] = [[] for _ in range(24)]
        plan_of = self._plan_of
        for u, act in enumerate(self._act):
            if plan_of[u] >= 0:
                act += boost
            if rnd() < act * wf:
                while True:
                    h = min(bisect_right(cum, rnd() * total), 23)
                    plan[h].append((base + (h + rnd()) * _HOUR, u))
                    if rnd() >= extra:
                        break
        self._plan = plan
        self._day = day

    def _hour(self, t0: float, t1: float) -> list[Event]:
        """All events of [t0, t1), inside one UTC hour, sorted, with ids."""
        m, rng = self.model, self._rng
        hour_start = math.floor(t0 / _HOUR) * _HOUR
        day = int(hour_start // _DAY)
        if day != self._day:
            self._plan_day(day)
        level = self._diurnal[int((hour_start - day * _DAY) // _HOUR)] * weekly_factor(
            day, m.weekend_factor)
        incs = _overlaps(self.incidents, t0, t1)
        ben = hour_effects(self.benign, t0, t1) if self.benign else None
        events: list[Event] = [e for e in self._carry if e["ts"] < t1]
        self._carry = [e for e in self._carry if e["ts"] >= t1]
        self._signups(t0, t1, level, incs, events, ben)
        self._sessions(t0, t1, incs, events, ben)
        self._payments(t0, t1, incs, events, ben)
        self._cancels(t0, t1, incs, events)
        for c, daily in enumerate(m.channel_daily_spend):
            if daily > 0:
                amount = daily / 24 * level * (t1 - t0) / _HOUR * rng.uniform(0.85, 1.15)
                events.append({"event_id": "", "kind": "spend", "ts": max(t1 - 1.0, t0),
                               "channel": CHANNELS[c], "amount": round(amount, 2)})
        if ben is not None and ben.gaps:
            events = _through_gaps(events, ben)
        late = [e for e in events if e["ts"] >= t1]
        if late:
            self._carry.extend(late)
            events = [e for e in events if e["ts"] < t1]
        events.sort(key=_TS)
        prefix = f"{self._tag}-{int(hour_start // _HOUR)}-"
        for i, e in enumerate(events):
            e["event_id"] = prefix + str(i)
            if e["ts"] < t0:  # rounding to ms may step below a first hour that starts mid-ms
                e["ts"] = t0
        if ben is not None and ben.late:
            events = self._delay_some(events, ben)
        return events

    def _delay_some(self, events: list[Event], ben: HourEffects) -> list[Event]:
        """Move the late share of ``events`` to the heap of late arrivals; the rest, in order.

        Draws from its own generator, so the events are the same with or without lateness;
        an event that would arrive during a gap (the pipe is down) arrives on time.
        """
        rnd, uniform = self._late_rng.random, self._late_rng.uniform
        kept = []
        for e in events:
            share = ben.late_share(e["ts"])
            if share and rnd() < share:
                arrival = e["ts"] + uniform(*LATE_DELAY_S)
                if ben.in_gap(arrival) is None:
                    self._late_seq += 1
                    heapq.heappush(self._late, (arrival, self._late_seq, e))
                    continue
            kept.append(e)
        return kept

    def _signups(self, t0: float, t1: float, level: float,
                 incs: list[Window], out: list[Event], ben: HourEffects | None = None) -> None:
        m, rng = self.model, self._rng
        rnd, gauss = rng.random, rng.gauss
        per_hour = m.signups_per_day / 24 * level
        drops = [(i, a, b) for i, a, b in incs if i.kind == "signup-tracking-drop"]
        for c, share in enumerate(m.channel_shares):
            lam = per_hour * share
            times = [t0 + (t1 - t0) * rnd()
                     for _ in range(poisson(rnd, gauss, lam * (t1 - t0) / _HOUR))]
            for inc, a, b in incs:
                if inc.kind == "channel-traffic-surge" and inc.channel == CHANNELS[c]:
                    n = poisson(rnd, gauss, lam * (inc.magnitude - 1) * (b - a) / _HOUR)
                    times.extend(a + (b - a) * rnd() for _ in range(n))
            if ben is not None:
                times = _benign_signups(times, CHANNELS[c], lam, t0, t1, ben, rnd, gauss)
            for ts in times:
                self._signup(ts, c, drops, incs, out)

    def _signup(self, ts: float, c: int, drops: list[Window],
                incs: list[Window], out: list[Event]) -> None:
        m, rnd = self.model, self._rng.random
        u = self._add_user(self._draw_segment(), c)
        s = self._seg[u]
        referred_by = None
        if c == _REFERRAL and self._advocates:
            referred_by = self._uid[self._advocates[int(rnd() * len(self._advocates))]]
        recorded = True
        for inc, a, b in drops:
            if a <= ts < b and inc.channel in ("all", CHANNELS[c]) and rnd() < inc.magnitude:
                recorded = False
        if recorded:
            out.append({"event_id": "", "kind": "signup", "ts": round(ts, 3),
                        "user_id": self._uid[u], "segment": SEGMENTS[s], "channel": CHANNELS[c],
                        "referred_by": referred_by})
        if rnd() < self._conv[s][c]:
            delay = rnd() ** 2 * m.conversion_window_days * _DAY
            plan = 1 if rnd() < m.annual_share else 0
            self._pending[u] = True
            self._schedule(ts + 60.0 + delay, _FIRST, u, 0, plan)
        self._session(ts + 5.0 + 115.0 * rnd(), u, incs, out)

    def _sessions(self, t0: float, t1: float, incs: list[Window],
                  out: list[Event], ben: HourEffects | None = None) -> None:
        hour = int((math.floor(t0 / _HOUR) * _HOUR - self._day * _DAY) // _HOUR)
        traffic = ben.traffic if ben is not None and ben.holidays else None
        rnd = self._rng.random
        for ts, u in self._plan[hour]:
            if ts >= t0:
                if traffic is not None and rnd() >= traffic(ts):  # fewer sessions on a holiday
                    continue
                self._session(ts, u, incs, out)

    def _session(self, ts: float, u: int, incs: list[Window],
                 out: list[Event]) -> None:
        """One activity event and its scans."""
        m, rng = self.model, self._rng
        rnd = rng.random
        s, c = self._seg[u], self._chan[u]
        uid, seg, ch = self._uid[u], SEGMENTS[s], CHANNELS[c]
        length = min(rng.expovariate(1.0 / m.mean_session_s), 3 * _HOUR)
        out.append({"event_id": "", "kind": "activity", "ts": round(ts, 3), "user_id": uid,
                    "segment": seg, "channel": ch, "session_s": round(length, 1)})
        lam, mean = m.scans_per_session, m.segment_match_means[s]
        for inc, a, b in incs:
            if a <= ts < b:
                if inc.kind == "channel-traffic-surge" and inc.channel == ch:
                    lam *= inc.magnitude
                elif inc.kind == "match-rate-regression" and inc.segment == seg:
                    mean -= inc.magnitude
        mean = min(max(mean, 0.02), 0.98)
        k = m.match_concentration
        alpha, beta = mean * k, (1.0 - mean) * k
        for _ in range(poisson(rnd, rng.gauss, lam)):
            score = min(max(rng.betavariate(alpha, beta), 0.0), 1.0)
            out.append({"event_id": "", "kind": "scan", "ts": round(ts + length * rnd(), 3),
                        "user_id": uid, "segment": seg, "channel": ch,
                        "match_score": round(score, 4)})

    def _payments(self, t0: float, t1: float, incs: list[Window],
                  out: list[Event], ben: HourEffects | None = None) -> None:
        """Trickle conversions from the free base, then every attempt due before ``t1``."""
        m, rng = self.model, self._rng
        rnd = rng.random
        n_users = len(self._uid)
        for _ in range(poisson(rnd, rng.gauss,
                               m.free_base_conversions_per_day / 24 * (t1 - t0) / _HOUR)):
            u = int(rnd() * n_users)
            if not self._paid_ever[u] and not self._pending[u]:
                self._pending[u] = True
                self._schedule(t0 + (t1 - t0) * rnd(), _FIRST, u, 0,
                               1 if rnd() < m.annual_share else 0)
        outages = [(a, b, i.magnitude) for i, a, b in incs if i.kind == "payment-outage"]
        in_gap = ben.in_gap if ben is not None and ben.gaps else None
        heap = self._heap
        while heap and heap[0][0] < t1:
            due, _, kind, u, gen, attempt, plan = heapq.heappop(heap)
            gap = None if in_gap is None else in_gap(due)
            if gap is not None:  # billing waits for the pipe: the attempt right after the gap
                self._seq += 1
                heapq.heappush(heap, (after_gap(due, gap), self._seq, kind, u, gen, attempt, plan))
                continue
            if kind == _FIRST and self._paid_ever[u]:
                self._pending[u] = False
                continue
            if kind == _RENEW and (gen != self._gen[u] or self._plan_of[u] < 0):
                continue
            p_fail = m.payment_failure_rate
            for a, b, mag in outages:
                if a <= due < b:
                    p_fail = mag
            ok = rnd() >= p_fail
            ts = round(due, 3)
            out.append({"event_id": "", "kind": "payment", "ts": ts, "user_id": self._uid[u],
                        "segment": SEGMENTS[self._seg[u]], "channel": CHANNELS[self._chan[u]],
                        "plan": PLANS[plan], "amount": self._prices[plan],
                        "status": "succeeded" if ok else "failed", "first": kind == _FIRST})
            if ok:
                self._last_pay[u] = ts
                if kind == _FIRST:
                    self._pending[u] = False
                    self._activate(u, plan)
                self._schedule(due + _PERIOD[plan], _RENEW, u, 0, plan)
            elif kind == _FIRST:
                if attempt == 0:
                    self._schedule(due + _DAY, _FIRST, u, 1, plan)
                else:
                    self._pending[u] = False
            elif attempt < m.renewal_retries:
                self._schedule(due + _DAY, _RENEW, u, attempt + 1, plan)
            else:  # dunning exhausted: the subscription ends
                self._cancel(u, due + 1.0, out)

    def _cancels(self, t0: float, t1: float, incs: list[Window],
                 out: list[Event]) -> None:
        m, rng = self.model, self._rng
        rnd = rng.random
        per_hour = len(self._active) * m.monthly_churn / 30 / 24
        times = [t0 + (t1 - t0) * rnd()
                 for _ in range(poisson(rnd, rng.gauss, per_hour * (t1 - t0) / _HOUR))]
        for inc, a, b in incs:
            if inc.kind == "churn-spike":
                n = poisson(rnd, rng.gauss, per_hour * (inc.magnitude - 1) * (b - a) / _HOUR)
                times.extend(a + (b - a) * rnd() for _ in range(n))
        for ts in times:
            if not self._active:
                break
            u = self._active[int(rnd() * len(self._active))]
            if ts <= self._last_pay[u]:  # never end a subscription before its latest payment
                ts = (self._last_pay[u] + t1) / 2
            self._cancel(u, ts, out)

    def _cancel(self, u: int, ts: float, out: list[Event]) -> None:
        out.append({"event_id": "", "kind": "cancel", "ts": round(ts, 3), "user_id": self._uid[u],
                    "segment": SEGMENTS[self._seg[u]], "channel": CHANNELS[self._chan[u]],
                    "plan": PLANS[self._plan_of[u]]})
        self._deactivate(u)
