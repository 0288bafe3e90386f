"""The lease on held batches (services/worker/lease.py) against kombu's real redis transport: a batch a
living worker holds past the visibility timeout stays with it; one whose worker stopped renewing goes
back on the queue at the next sweep."""
from __future__ import annotations

import time

import pytest
import redis
from kombu import Connection

from services.worker.lease import renew
from tests.support import redis_server

QUEUE = "lease-test"


@pytest.fixture
def channel(tmp_path):
    with redis_server(tmp_path) as url, Connection(url, transport_options={"visibility_timeout": 5}) as connection:
        channel = connection.channel()
        channel.queue_declare(QUEUE)
        yield channel, redis.Redis.from_url(url)


def _deliver(channel, body: str):
    """Publish one message and take it without acknowledging it, as a worker does (acks late)."""
    channel.basic_publish(channel.prepare_message(body), exchange="", routing_key=QUEUE)
    message = channel.basic_get(QUEUE, no_ack=False)
    assert message is not None
    return message


def _age(client, tag, seconds: float) -> None:
    """Pretend the message was delivered `seconds` ago (past the visibility timeout)."""
    client.zadd("unacked_index", {tag: time.time() - seconds}, xx=True)


def test_a_held_batch_is_renewed_and_not_restored_and_an_abandoned_one_is(channel):
    channel, client = channel
    held, acked = _deliver(channel, "held"), _deliver(channel, "acked")
    channel.basic_ack(acked.delivery_tag)
    _age(client, held.delivery_tag, 60)

    assert renew(channel) == 1  # only the message still held; the acknowledged one is not added back
    assert client.zcard("unacked_index") == 1
    channel.qos.restore_visible(num=None, interval=1)
    assert client.llen(QUEUE) == 0, "a batch its living worker renewed went back on the queue"

    # The worker died: nobody renews, and the sweep puts the batch back for another worker.
    _age(client, held.delivery_tag, 60)
    channel.qos.restore_visible(num=None, interval=1)
    assert client.llen(QUEUE) == 1 and client.hlen("unacked") == 0
