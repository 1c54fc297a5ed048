"""``make faults``: the fault matrix of issue 19, measured on the embedded broker.

Each row runs a worker (or two) on its own topics, injects one fault, and measures what came
out, never assuming it: the events published against the ``kpis`` windows the worker closed
(lost, counted twice), the alerts it opened on ``alerts`` against the messages a local Slack
Web API server holds (posted, duplicated, lost), whether the worker is alive (or was back,
restarted as a supervisor would, and counting again), how long that took, and the worker's
and broker's memory. ``python -m bench.faults`` runs them; ``bench/faults/__main__.py`` writes
``bench/faults.json`` and the table in ``docs/faults.md``.

A measurement tool like ``make bench``, not a test: a row that shows a failure is reported as
measured.
"""
