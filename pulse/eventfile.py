"""Moved to :mod:`stream.eventfile`; this name stays for the modules that still import it."""

from stream.eventfile import (
    RECORD_VERSION,
    FileScan,
    LineProblem,
    events_of_line,
    open_lines,
    scan_file,
    sorted_events,
)

__all__ = ["FileScan", "LineProblem", "RECORD_VERSION", "events_of_line", "open_lines",
           "scan_file", "sorted_events"]
