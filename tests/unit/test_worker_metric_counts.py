"""The worker's metrics count what a batch did: photos by outcome and reason, stage seconds, failed tasks."""
import pytest

from services.common.errors import DependencyUnavailable
from services.common.schemas import Failure
from services.worker import metrics
from services.worker.pipeline import BatchOutcome


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(metrics, "_metrics", None)
    return metrics.current()


def value(m, name, **labels):
    return m.registry.get_sample_value(name, labels)


def test_a_batch_counts_its_photos_by_outcome_and_reason(fresh):
    failures = [Failure(photo_id="a", url="http://x/a", code="http_404", reason="gone"),
                Failure(photo_id="b", url="http://x/b", code="http_404", reason="gone"),
                Failure(photo_id="c", url="http://x/c", code="bad_image", reason="not a picture")]
    metrics.record_batch(BatchOutcome(5, 2, failures))
    assert value(fresh, "worker_photos_total", outcome="inserted", reason="") == 5
    assert value(fresh, "worker_photos_total", outcome="skipped", reason="") == 2
    assert value(fresh, "worker_photos_total", outcome="failed", reason="http_404") == 2
    assert value(fresh, "worker_photos_total", outcome="failed", reason="bad_image") == 1


def test_a_stage_is_timed_even_when_it_raises(fresh):
    with pytest.raises(RuntimeError):
        with metrics.timed("embed"):
            raise RuntimeError("embedder down")
    assert value(fresh, "worker_stage_duration_seconds_count", stage="embed") == 1


def test_a_task_that_fails_for_good_fails_its_photos_with_its_code(fresh):
    exc = DependencyUnavailable("the embedder is down")
    metrics.on_task_failure(exception=exc, kwargs={"photos": [{}, {}, {}]})
    metrics.on_task_retry()
    assert value(fresh, "worker_tasks_total", outcome="failed") == 1
    assert value(fresh, "worker_tasks_total", outcome="retried") == 1
    assert value(fresh, "worker_photos_total", outcome="failed", reason="dependency_unavailable") == 3


def test_port_zero_serves_nothing():
    assert metrics.start_worker_metrics(0) is None
