"""saladcog.client and its CLI when things go wrong: a server stopped mid-prediction, answers
that are not Cog's, hostile URL lists, temporary files. Real Cog servers (coglet, the echo
fixture) and a real webhook receiver over [::1]."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from saladcog.batch import result_path
from saladcog.client import Client, ClientError
from saladcog.serve import CogServer
from saladcog.webhooks import Receiver

ROOT = Path(__file__).resolve().parents[1]
ECHO = "tests/fixtures/echo/predict.py:Predictor"


@pytest.fixture(scope="module")
def echo_server():
    with CogServer(ECHO) as server:
        server.wait_ready(timeout=60)
        yield server


def cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "saladcog.cli", *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


def test_async_prediction_survives_a_server_stopped_mid_run(tmp_path):
    """An instance stopped before its async prediction ends (the grace, COG_SHUTDOWN_TIMEOUT, is
    shorter than the prediction) sends no completed webhook: Cog drops it. The client resends
    the same id; a new server on the same port runs it; the receiver has it completed once.
    The servers run as on Salad: through ipv6_entrypoint.sh, which gets the SIGTERM."""
    first = CogServer(ECHO, front_door="bind", env={"COG_SHUTDOWN_TIMEOUT": "1"}).start()
    port = first.port
    with Receiver(tmp_path / "hooks.sqlite", host="::1") as rx, Client(first.url()) as client:
        try:
            first.wait_ready(timeout=60)
            result = {}

            def wait_for_result():
                try:
                    result["prediction"] = client.predict_async(
                        {"text": "survivor", "seconds": 3}, webhook=rx.url, store=rx.store,
                        prediction_id="moved-instance", timeout=90, resend_after=1.0,
                    )
                except Exception as e:  # noqa: BLE001 - handed to the test thread
                    result["error"] = e

            caller = threading.Thread(target=wait_for_result)
            caller.start()
            deadline = time.monotonic() + 20
            while not rx.store.events("moved-instance") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert [e.event for e in rx.store.events("moved-instance")] == ["start"]
            first.process.send_signal(signal.SIGTERM)  # as the platform stops an instance
            assert first.process.wait(timeout=20) == 137  # the grace ended first: killed, no webhook
            assert rx.store.completed("moved-instance") is None  # Cog's upstream fault: no webhook
            time.sleep(2.0)  # the client resends into a closed port meanwhile
        finally:
            first.stop()
        with CogServer(ECHO, port=port, front_door="bind") as second:
            second.wait_ready(timeout=60)
            caller.join(timeout=60)
            assert "error" not in result, result
            assert result["prediction"].output == "survivor"
            log = second.log_path.read_text()
            assert log.count('"Starting prediction","prediction_id":"moved-instance"') == 1
        events = rx.store.events("moved-instance")
        assert [e.event for e in events].count("completed") == 1
        assert rx.store.completed("moved-instance")["status"] == "succeeded"
        assert client.retried["resend: no answer"] >= 1


class NotCog:
    """A real HTTP server on [::1] that answers like something in front of a Cog server might:
    `answers` maps a path prefix to (status, content type, body), for every method."""

    def __init__(self, answers: dict[str, tuple[int, str, bytes]]):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def answer(self):
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                for prefix, (status, kind, body) in outer.answers.items():
                    if self.path.startswith(prefix):
                        break
                else:
                    status, kind, body = 404, "text/plain", b"no route"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = answer

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6

        self.answers = answers
        self.server = Server(("::1", 0), Handler)
        self.url = f"http://[::1]:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> NotCog:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


HTML = (200, "text/html", b"<html><body>Welcome to the hotel wifi</body></html>")
A_LIST = (200, "application/json", b'[{"id": "x", "status": "succeeded"}]')


@pytest.mark.parametrize("answer, message", [
    (HTML, "answered HTTP 200 with text/html that is not JSON ('<html><body>Welcome"),
    (A_LIST, "answered HTTP 200 with a JSON list, not the object a Cog server sends"),
    ((200, "application/json", b"[" * 100_000), "answered HTTP 200 with application/json that is not JSON"),
])
def test_an_answer_that_is_not_cogs_is_named_not_a_traceback(answer, message):
    with NotCog({"/": answer}) as server, Client(server.url) as client:
        with pytest.raises(ClientError, match="is this a Cog server") as raised:
            client.predict({"text": "hi"}, prediction_id="p1")
        assert message in str(raised.value)
        assert "/predictions/p1" in str(raised.value)
        done = cli("predict", "--url", server.url, "-i", "text=hi", "--sync")
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert message in done.stderr


def test_a_schema_that_is_not_json_falls_back_as_for_a_404():
    prediction = json.dumps({"id": "p2", "status": "succeeded", "output": "fine"}).encode()
    with NotCog({"/openapi.json": HTML, "/predictions/": (200, "application/json", prediction)}) as server:
        done = cli("predict", "--url", server.url, "-i", "text=hi", "--sync")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "fine"


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_batch_results_stay_under_out_whatever_the_urls(echo_server, tmp_path):
    """The echo model answers each URL with itself: every result lands under --out, named from
    its URL, with `..`, an empty host, an absolute path or an over-long name made safe."""
    work = tmp_path / "work"
    work.mkdir()
    urls = [
        f"http:///{work}/absolute",  # empty host: once written to that absolute path
        "http://host/../../dotdot",  # out/host/../../dotdot.json = work/dotdot.json
        "http://host/a/./b/../../../../dotdot2",
        "http://../dotdot3",
        "https://host/long?" + "sig=" + "x" * 400,  # a signed URL: over NAME_MAX as one name
        "http://host/plain.wav",
    ]
    url_list = work / "urls.txt"
    url_list.write_text("\n".join(urls) + "\n")
    out = work / "out"
    temp = tmp_path / "tmp"
    temp.mkdir()
    done = cli("batch", str(url_list), "--out", str(out), "--url", echo_server.url(), "--input-name", "text",
               "-q", env={"TMPDIR": str(temp)})
    assert done.returncode == 0, done.stderr
    assert "6 transcribed, 0 failed" in done.stderr
    assert [p for p in files_under(work) if not p.startswith("out")] == ["urls.txt"]
    entries = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert sorted(e["input"] for e in entries) == sorted(urls)
    for entry in entries:
        result = (out / entry["result"]).resolve()
        assert result.is_relative_to(out.resolve())
        assert json.loads(result.read_text())["output"] == entry["input"]
    plain = result_path(out, "http://host/plain.wav")
    assert plain.parent == out / "host" and plain.name.startswith("plain.wav~") and plain.is_file()
    # The run's own webhook receiver (a loopback server) left nothing in the temporary folder.
    assert files_under(temp) == []


def run_batch(url_list: Path, out: Path, server) -> subprocess.CompletedProcess:
    return cli("batch", str(url_list), "--out", str(out), "--url", server.url(), "--input-name", "text", "-q")


def test_batch_keeps_one_result_per_url_and_a_rerun_counts_only_its_own(echo_server, tmp_path):
    """URLs that differ only in `?` vs `_`, `&` vs `_` or http vs https once shared three result
    files: each now has its own, and a rerun counts as done only results that record its input."""
    urls = [
        "http://host/talk?take=1", "http://host/talk_take=1",
        "http://host/talk?a=1&b=2", "http://host/talk?a=1_b=2",
        "http://host/talk.wav", "https://host/talk.wav",
    ]
    url_list = tmp_path / "urls.txt"
    url_list.write_text("\n".join(urls) + "\n")
    out = tmp_path / "out"
    done = run_batch(url_list, out, echo_server)
    assert done.returncode == 0 and "6 transcribed, 0 failed" in done.stderr, done.stderr
    results = sorted((out / "host").iterdir())
    assert len(results) == 6, results
    assert sorted(json.loads(p.read_text())["output"] for p in results) == sorted(urls)

    done = run_batch(url_list, out, echo_server)
    assert "6 of 6 already done" in done.stderr and "sending 0" in done.stderr, done.stderr
    # One result gone, another overwritten by a different input's (as an older naming left it):
    # both are sent again, and each ends with its own result.
    result_path(out, urls[0]).unlink()
    result_path(out, urls[5]).write_text(result_path(out, urls[4]).read_text())
    done = run_batch(url_list, out, echo_server)
    assert "4 of 6 already done" in done.stderr and "sending 2" in done.stderr, done.stderr
    for url in urls:
        assert json.loads(result_path(out, url).read_text())["output"] == url


def test_a_host_folder_that_links_out_of_out_is_refused(echo_server, tmp_path):
    """A symbolic link under --out is followed only where it stays under --out."""
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (out / "inside").mkdir(parents=True)
    elsewhere.mkdir()
    (out / "outbound").symlink_to(elsewhere)
    (out / "inbound").symlink_to(out / "inside")
    url_list = tmp_path / "urls.txt"
    url_list.write_text("http://outbound/talk.wav\nhttp://inbound/talk.wav\n")
    done = run_batch(url_list, out, echo_server)
    assert done.returncode != 0 and "1 transcribed, 1 failed" in done.stderr, done.stderr
    assert list(elsewhere.iterdir()) == []
    entries = {e["input"]: e for e in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())}
    assert entries["http://outbound/talk.wav"]["error"].endswith(f"a symbolic link under {out} leads out of it")
    assert [p.name for p in (out / "inside").iterdir()] == [result_path(out, "http://inbound/talk.wav").name]
    # A rerun does not take the link's target for a stored result, and refuses again.
    again = run_batch(url_list, out, echo_server).stderr
    assert "1 of 2 already done" in again and "0 transcribed, 1 failed" in again, again
    assert list(elsewhere.iterdir()) == []


def test_async_predict_leaves_the_temporary_folder_as_it_was(echo_server, tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    for _ in range(3):
        done = cli("predict", "--url", echo_server.url(), "--async", "-i", "text=later", env={"TMPDIR": str(temp)})
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "later"
    assert files_under(temp) == []
    refused = cli("predict", "--url", echo_server.url(), "--async", "--resend-after", "-1", "-i", "text=x",
                  env={"TMPDIR": str(temp)})
    assert refused.returncode == 2 and "--resend-after must be 0 (never) or a positive number" in refused.stderr
    assert files_under(temp) == []
