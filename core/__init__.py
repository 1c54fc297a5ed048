"""What every package of Pulse shares, with no Kafka and no third-party imports.

- :mod:`core.settings`: the one settings object (``PULSE_*`` variables).
- :mod:`core.vocabulary`: segments, channels, plans, payment statuses, event kinds and ``ALL``.
- :mod:`core.timefmt`: how an event time is written and read back (ISO-8601 UTC).

``alerting``, ``detectors``, ``kpis`` and ``simulator`` import this package, never ``stream``.
"""
