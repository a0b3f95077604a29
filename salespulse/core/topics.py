"""Create the topics SalesPulse relies on, with the configs it relies on, if missing."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

logger = logging.getLogger(__name__)


TopicSpec = int | tuple[int, dict[str, str]]


def group_consumer_options(bootstrap: str, group: str, session_timeout_s: float) -> dict[str, Any]:
    """aiokafka options of a consumer group member that commits its own offsets.

    Tansu's first group join waits about half the session timeout, so it is short.
    """
    session_ms = int(session_timeout_s * 1000)
    return {
        "bootstrap_servers": bootstrap,
        "group_id": group,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": session_ms,
        "heartbeat_interval_ms": max(100, session_ms // 5),
        "rebalance_timeout_ms": session_ms,
    }


async def ensure_topics(
    bootstrap: str, topics: dict[str, TopicSpec], *, attempts: int = 30, delay_s: float = 1.0
) -> None:
    """``topics`` maps name → partitions, or (partitions, topic configs).

    Retries while the broker is still coming up. Existing topics are left as they are.
    """
    for attempt in range(1, attempts + 1):
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [
                _new_topic(name, spec) for name, spec in topics.items() if name not in existing
            ]
            if missing:
                # Another process may create one between our list and create.
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(missing)
                logger.info("created topics %s", [t.name for t in missing])
        except (KafkaError, OSError) as exc:
            if attempt == attempts:
                raise
            logger.warning("broker not ready for topic setup (%r), retrying", exc)
            await asyncio.sleep(delay_s)
        else:
            return
        finally:
            await admin.close()


def _new_topic(name: str, spec: TopicSpec) -> NewTopic:
    partitions, configs = (spec, {}) if isinstance(spec, int) else spec
    return NewTopic(name, partitions, replication_factor=1, topic_configs=configs or None)
