"""JobMetrics Pulse command line."""
