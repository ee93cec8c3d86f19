"""The worker's prefetch bound and its downloads, without a Cog server: the budget under
concurrent fetchers, and each kind of download failure from a real HTTP server and moto's S3."""

from __future__ import annotations

import random
import threading
import time

import httpx
import pytest

from saladcog.addresses import parse_networks
from saladcog.inputs import Limits, checked_transport
from saladcog.worker.fetch import Fetcher, InputFailure, Stopped, TransientFailure
from saladcog.worker.prefetch import Budget
from tests.worker_harness import CLIPS, InputServer, good_url


def test_slots_bound_the_files_held():
    budget = Budget(max_files=2, max_bytes=1000)
    assert budget.take_slot(0.1) and budget.take_slot(0.1)
    assert not budget.take_slot(0.1)
    budget.release(0)
    assert budget.take_slot(0.1)


def test_bytes_wait_for_room_and_an_oversized_file_is_taken_alone():
    budget = Budget(max_files=10, max_bytes=100)
    assert budget.reserve(60, 0.1)
    assert not budget.reserve(60, 0.1)  # would make 120 on disk
    assert budget.take_slot(0.1)  # 60 < 100: room to receive one more
    budget.grow(40)
    assert not budget.take_slot(0.1)  # the budget is full: no more messages taken
    budget.release(100, slot=False)
    assert budget.reserve(500, 0.1)  # larger than the budget, but nothing else is on disk
    assert budget.peak_bytes == 500


def test_concurrent_fetchers_never_exceed_the_bound():
    budget = Budget(max_files=3, max_bytes=1000)
    rng = random.Random(7)
    sizes = [rng.randint(1, 1000) for _ in range(200)]
    lock = threading.Lock()
    errors = []

    def fetcher():
        while True:
            with lock:
                if not sizes:
                    return
                size = sizes.pop()
            if not budget.take_slot(10):
                errors.append("no slot in 10 s")
                return
            if not budget.reserve(size, 10):
                errors.append("no room in 10 s")
                return
            time.sleep(0.001)
            budget.release(size)

    threads = [threading.Thread(target=fetcher) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert budget.files == 0 and budget.bytes == 0
    assert budget.peak_files <= 3 and budget.peak_bytes <= 1000
    assert budget.peak_files == 3  # the bound was reached, so it was what held them back


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    with InputServer(tmp_path_factory.mktemp("inputs")) as server:
        yield server


def fetcher(budget=None, limits=Limits(), stopping=None, **kwargs) -> Fetcher:
    return Fetcher(limits, 1.0, budget or Budget(3, 10_000_000), stopping or threading.Event(), **kwargs)


def test_a_download_is_counted_in_the_budget(inputs, tmp_path):
    budget = Budget(3, 10_000_000)
    path = tmp_path / "a.wav"
    size = fetcher(budget).download(good_url(inputs.url, 0), path)
    assert path.read_bytes() == CLIPS[0].read_bytes()
    assert size == budget.bytes == len(CLIPS[0].read_bytes())


@pytest.mark.parametrize(
    ("kind", "max_bytes", "error", "words"),
    [
        ("missing", 1000, InputFailure, "the server answered HTTP 404 Not Found"),
        ("stall", 1_000_000, TransientFailure, "the server sent nothing for 1 s"),
        ("good", 1000, InputFailure, "larger than 1,000 bytes, the most this worker takes (SALADCOG_MAX_INPUT_BYTES)"),
    ],
)
def test_failed_downloads_leave_nothing_and_say_why(inputs, tmp_path, kind, max_bytes, error, words):
    budget = Budget(3, 10_000_000)
    path = tmp_path / "x.wav"
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")) as caught:
        fetcher(budget, Limits(max_bytes=max_bytes)).download(f"{inputs.url}/{kind}/1/x.wav?token=secret", path)
    assert "secret" not in str(caught.value)  # a presigned URL's query is not repeated
    assert not path.exists() and budget.bytes == 0


def test_a_stop_abandons_a_download_waiting_for_room(inputs, tmp_path):
    budget = Budget(3, 10)
    budget.reserve(10, 0)
    stopping = threading.Event()
    threading.Timer(0.3, stopping.set).start()
    with pytest.raises(Stopped):
        fetcher(budget, stopping=stopping).download(good_url(inputs.url, 0), tmp_path / "x.wav")
    assert budget.bytes == 10 and not (tmp_path / "x.wav").exists()


def test_downloads_go_only_to_allowed_addresses(inputs, tmp_path):
    """The runner's own address rules (inputs.checked_transport): loopback is refused by default,
    before any connection, and allowed when SALADCOG_FETCH_ALLOW_NETWORKS names it."""
    refused = Limits()
    with pytest.raises(InputFailure, match="its address is not allowed"):
        fetcher(limits=refused, transport=lambda deadline: checked_transport(deadline, refused)).download(
            good_url(inputs.url, 0), tmp_path / "x.wav")
    assert not (tmp_path / "x.wav").exists()
    allowed = Limits(allowed_networks=parse_networks("127.0.0.0/8"))
    fetcher(limits=allowed, transport=lambda deadline: checked_transport(deadline, allowed)).download(
        good_url(inputs.url, 0), tmp_path / "y.wav")
    assert (tmp_path / "y.wav").read_bytes() == CLIPS[0].read_bytes()


def test_s3_inputs(aws, tmp_path):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="media")
    s3.put_object(Bucket="media", Key="talks/a.wav", Body=CLIPS[0].read_bytes())
    budget = Budget(3, 10_000_000)
    path = tmp_path / "a.wav"
    assert fetcher(budget, s3_client=s3).download("s3://media/talks/a.wav", path) == path.stat().st_size
    assert path.read_bytes() == CLIPS[0].read_bytes()
    with pytest.raises(InputFailure, match="could not fetch s3://media/talks/b.wav: no such object"):
        fetcher(s3_client=s3).download("s3://media/talks/b.wav", tmp_path / "b.wav")
    with pytest.raises(InputFailure, match="SALADCOG_MAX_INPUT_BYTES"):
        fetcher(limits=Limits(max_bytes=100), s3_client=s3).download("s3://media/talks/a.wav", tmp_path / "c.wav")
