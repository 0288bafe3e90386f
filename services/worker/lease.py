"""A lease on the batches a living worker holds, so that a dead worker's batches come back in a minute.

How Redis delivery works (kombu's redis transport): a delivered, not yet acknowledged message sits in
the `unacked` hash with its delivery time in the `unacked_index` sorted set; every consumer sweeps
that index every `unacked_restore_interval` seconds and puts back on the queue whatever was
delivered more than `visibility_timeout` seconds ago. A graceful shutdown restores its own messages
and a killed pool child's task is requeued (`task_reject_on_worker_lost`), but a main worker process
that is SIGKILLed (OOM killer, container restart) restores nothing: its batches wait out the whole
visibility timeout.

Kombu offers only that one knob, and it is a trade-off: a short timeout recovers fast but also
restores the batches that living workers are still running or holding for a retry countdown (an
ETA message stays unacknowledged in the worker that holds it), so they run twice; a long one (the
old 3600 s) leaves a killed worker's batches invisible for an hour. Task time limits would bound a
batch's run, not the retry countdowns, and would have to be far shorter than a slow batch.

So the timeout is short (`WORKER_VISIBILITY_TIMEOUT_S`, 60 s) and a living worker renews it: every
quarter of the timeout, this consumer step moves the delivery time of each message it still holds
to now (ZADD XX: a message acknowledged meanwhile is not added back). Only a worker that is gone
stops renewing, and its batches are restored within the timeout plus one sweep. Kombu keeps the held
tags in its QoS's private `_delivered`/`_dirty`; there is no public accessor, which is why this
reads them (checked against kombu 5.7, and it logs rather than crashes if they change).
"""
from __future__ import annotations

import logging
import time

from celery import bootsteps

log = logging.getLogger(__name__)


def held_tags(qos) -> list[str]:
    """Delivery tags this consumer holds and has not acknowledged yet."""
    delivered = getattr(qos, "_delivered", None) or {}
    acked = getattr(qos, "_dirty", None) or set()
    return [tag for tag in list(delivered) if tag not in acked]


def renew(channel) -> int:
    """Move the delivery time of the messages `channel` holds to now; returns how many were renewed."""
    tags = held_tags(channel.qos)
    if not tags:
        return 0
    now = time.time()
    with channel.conn_or_acquire() as client:
        return int(client.zadd(channel.unacked_index_key, {tag: now for tag in tags}, xx=True, ch=True))


class UnackedLease(bootsteps.StartStopStep):
    """The consumer step that renews the lease every `interval` seconds while the worker lives."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c, **kwargs):
        super().__init__(c, **kwargs)
        timeout = (c.app.conf.broker_transport_options or {}).get("visibility_timeout", 3600)
        self.interval = max(1.0, float(timeout) / 4)
        self.tref = None

    def start(self, c):
        self.tref = c.timer.call_repeatedly(self.interval, self._renew, (c,), priority=10)

    def stop(self, c):
        if self.tref is not None:
            self.tref.cancel()
            self.tref = None

    def _renew(self, c) -> None:
        consumer = getattr(c, "task_consumer", None)
        channel = getattr(consumer, "channel", None)
        if channel is None or not hasattr(channel, "unacked_index_key"):
            return  # not connected right now, or not the redis transport: nothing to renew
        try:
            renewed = renew(channel)
            if renewed:
                log.debug("renewed the visibility of %d held batches", renewed)
        except Exception as exc:  # a broker blip: the next tick tries again, well within the timeout
            log.warning("could not renew the visibility of held batches (%s)", exc)
