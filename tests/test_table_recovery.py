"""Faust's table recovery as Pulse amends it (stream/faust_internals.py): a kept changelog offset
past the log's end is dropped, and a recovery that receives nothing is found and can be ended.

Faust's ``Recovery`` is a service of a running app; here its method is called on a stand-in
holding only what the method reads (a logger and its log-table helpers), with a stand-in
consumer answering the two offset requests: the broker part is covered by
tests/test_broker_reset.py."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from types import SimpleNamespace
from typing import Any

from faust.tables.recovery import Recovery
from faust.types import TP

from stream.faust_internals import (
    forget_offsets_past_the_log,
    stalled_changelogs,
    stop_waiting_for_changelog,
)

CHANGELOG = TP("pulse-detector-state-changelog", 0)


class Offsets:
    """The consumer's answers: the offset after each partition's last record, and its first."""

    def __init__(self, end: int, earliest: int = 0) -> None:
        self.end, self.earliest = end, earliest

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.end for tp in tps}

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        return {tp: self.earliest for tp in tps}


def _start_offsets(kept: int | None, end: int) -> int:
    forget_offsets_past_the_log()
    recovery: Any = SimpleNamespace(log=logging.getLogger("test"),
                                    _start_offsets_logtable=lambda *a, **k: "")
    destination: Counter[TP] = Counter()
    if kept is not None:
        destination[CHANGELOG] = kept
    consumer: Any = Offsets(end)
    asyncio.run(Recovery._build_offsets(recovery, consumer, {CHANGELOG}, destination,
                                        "active"))
    return destination[CHANGELOG]


def test_an_offset_past_the_end_of_a_new_log_is_read_from_its_start() -> None:
    assert _start_offsets(29, end=13) == -1    # the old log's offset, on a shorter new log
    assert _start_offsets(29, end=0) == -1     # a new empty log


def test_an_offset_within_the_log_is_kept() -> None:
    assert _start_offsets(12, end=13) == 12    # read up to the last record
    assert _start_offsets(5, end=13) == 5
    assert _start_offsets(0, end=13) == 0      # offset 0 is an offset, not "none"


def test_the_wrapper_is_installed_once() -> None:
    forget_offsets_past_the_log()
    wrapped = Recovery._build_offsets
    forget_offsets_past_the_log()
    assert Recovery._build_offsets is wrapped
    assert not hasattr(wrapped.__wrapped__, "__wrapped__")  # type: ignore[attr-defined]


def _app(offset: int, highwater: int, received_s_ago: float | None,
         in_recovery: bool = True) -> Any:
    now = time.monotonic()
    recovery = SimpleNamespace(
        in_recovery=in_recovery, active_tps={CHANGELOG},
        active_offsets=Counter({CHANGELOG: offset}),
        active_highwaters=Counter({CHANGELOG: highwater}),
        _recovery_started_at=now - 60.0,
        _active_events_received_at={} if received_s_ago is None
        else {CHANGELOG: now - received_s_ago})
    return SimpleNamespace(tables=SimpleNamespace(recovery=recovery))


def test_a_recovery_that_waits_for_records_is_found_with_how_long_it_got_nothing() -> None:
    offset, idle = stalled_changelogs(_app(-1, 12, None))[CHANGELOG]
    assert offset == 0 and 59.0 <= idle < 61.0    # nothing since the recovery began
    offset, idle = stalled_changelogs(_app(4, 12, 2.0))[CHANGELOG]
    assert offset == 4 and 1.0 <= idle < 3.0      # its last record came 2 s ago


def test_a_recovery_with_nothing_left_or_not_running_is_not_stalled() -> None:
    assert stalled_changelogs(_app(12, 12, 50.0)) == {}
    assert stalled_changelogs(_app(-1, -1, None)) == {}        # an empty changelog
    assert stalled_changelogs(_app(-1, 12, None, in_recovery=False)) == {}
    assert stalled_changelogs(SimpleNamespace()) == {}         # no tables: another app


def test_a_recovery_told_to_stop_waiting_has_nothing_left() -> None:
    app = _app(-1, 12, None)
    assert stop_waiting_for_changelog(app, CHANGELOG) == 12
    assert stalled_changelogs(app) == {}
    assert app.tables.recovery.active_offsets[CHANGELOG] == 12
    assert stop_waiting_for_changelog(SimpleNamespace(), CHANGELOG) is None
