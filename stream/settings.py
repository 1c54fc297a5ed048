"""The settings object now lives in :mod:`core.settings` (no Kafka, no third-party imports);
this name stays so stream code and older imports keep working."""

from core.settings import *  # noqa: F403
from core.settings import __all__  # noqa: F401
