"""What every package of Pulse shares, with no Kafka and no third-party imports.

- :mod:`core.settings`: the one settings object (``PULSE_*`` variables).
- :mod:`core.vocabulary`: segments, channels, plans, payment statuses, event kinds and ``ALL``.
- :mod:`core.timefmt`: how an event time is written and read back (ISO-8601 UTC).
- :mod:`core.processes`: stopping a child's process group (the embedded broker, a Kafka node).
- :mod:`core.jsonvalues`: which values a state file holds as they are (both state encoders).

``alerting``, ``detectors``, ``kpis`` and ``simulator`` import this package, never ``stream``.
"""
