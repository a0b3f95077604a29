"""The process's one logging setup. faust's worker is told to leave it as it is.

Applied by the command line for every command and by ``launcher.serve`` (a process it
runs may have been spawned without the command line). Records are plain lines, named by
their logger, with no colours or other terminal escape codes, on a TTY or not.
"""

from __future__ import annotations

import logging.config

LOG_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"
# faust/mode narrate every start, stop and rebalance step at INFO; the root logger stays at
# WARNING for them and our own packages log at the configured level.
OUR_LOGGERS = ("salespulse", "handlers", "streams", "metrics")


def configure_logging(level: str) -> None:
    """Our format on stderr; ``level`` for our packages, WARNING for everyone else's."""
    logging.config.dictConfig(logging_config(level))


def logging_config(level: str) -> dict[str, object]:
    """One handler that filters nothing; levels are set per logger instead."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": LOG_FORMAT}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain",
                                "stream": "ext://sys.stderr"}},
        "root": {"level": "DEBUG" if level == "DEBUG" else "WARNING", "handlers": ["stderr"]},
        "loggers": {name: {"level": level} for name in OUR_LOGGERS},
    }  # fmt: skip
