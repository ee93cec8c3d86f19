"""The readiness / liveness probe (src/saladcog/probe.py) against real Cog servers through the
entrypoint's IPv6 port, run as Salad's exec probe runs it: a separate Python process."""

from __future__ import annotations

import http.server
import shutil
import socket
import subprocess
import threading
import time

from saladcog import salad
from tests.entrypoint_harness import Entrypoint, REPO, free_port, health, request, venv_bin

PROBE = REPO / "src" / "saladcog" / "probe.py"


def run_probe(command: list[str], port: int) -> tuple[int, str]:
    done = subprocess.run([*command, "--port", str(port)], capture_output=True, text=True, timeout=10)
    return done.returncode, done.stderr


def test_not_ready_during_slow_setup_then_ready_through_the_relay(tmp_path):
    # The probe runs with cog 0.9.9's Python: standard library only, nothing from this project.
    probe = [str(venv_bin("0.9.9") / "python"), str(PROBE)]
    with Entrypoint("0.9.9", "relay", tmp_path, env={"ECHO_SETUP_SECONDS": "4"}) as e:
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            code, err = run_probe(probe, e.port)
            seen.append((code, health("::1", e.port)))
            if code == 0:
                break
            time.sleep(0.2)
        assert seen[-1] == (0, "READY"), seen
        # Before READY the probe failed, including while the server said STARTING.
        assert (1, "STARTING") in seen, seen
        assert all(code == 1 for code, _ in seen[:-1])


def test_liveness_accepts_busy_readiness_does_not(tmp_path):
    probe = [str(venv_bin("0.23.1") / "python"), str(PROBE)]
    with Entrypoint("0.23.1", "relay", tmp_path) as e:
        e.wait_health("READY")
        worker = threading.Thread(target=request, args=("::1", e.port, "POST", "/predictions",
                                                       {"input": {"text": "slow", "seconds": 3}}))
        worker.start()
        try:
            deadline = time.monotonic() + 5
            while health("::1", e.port) != "BUSY" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert health("::1", e.port) == "BUSY"
            code, err = run_probe(probe, e.port)
            assert code == 1 and "status BUSY" in err
            assert run_probe([*probe, "--liveness"], e.port)[0] == 0
        finally:
            worker.join(timeout=10)
        assert run_probe(probe, e.port)[0] == 0


def test_probe_fails_with_a_reason_when_nothing_listens_or_the_body_is_not_cog():
    probe = [str(venv_bin("0.23.1") / "python"), str(PROBE)]
    code, err = run_probe(probe, free_port())
    assert code == 1 and "cannot read [::1]" in err

    class NotCog(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>ok</html>")

        def log_message(self, *args):
            pass

    class Server6(http.server.HTTPServer):
        address_family = socket.AF_INET6

    server = Server6(("::1", 0), NotCog)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code, err = run_probe([*probe, "--liveness"], server.server_address[1])
        assert code == 1 and "cannot read" in err
    finally:
        server.shutdown()
        server.server_close()


def test_unmodified_image_command_and_inline_probe(tmp_path):
    """Scenario 1: an unmodified Cog image run by the command override alone (entrypoint text
    through `sh -c`, probe text through `python -c`), here with cog 0.16.12 and no socat."""
    command = salad.unmodified_command()
    assert command[:2] == ["/sbin/tini", "--"]  # Cog images' own ENTRYPOINT, kept
    probe = [str(venv_bin("0.16.12") / "python"), *salad.unmodified_probe()[1:]]
    e = Entrypoint("0.16.12", "auto", tmp_path)  # not started: its working directory and env only
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("sh", "dirname", "sleep"):
        (tools / tool).symlink_to(shutil.which(tool))
    env = {**e.env, "PATH": f"{venv_bin('0.16.12')}:{tools}"}
    process = subprocess.Popen(command[2:], cwd=e.workdir, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while run_probe(probe, e.port)[0] != 0 and time.monotonic() < deadline:
            assert process.poll() is None
            time.sleep(0.2)
        status, body = request("::1", e.port, "POST", "/predictions", {"input": {"text": "as published"}})
        assert (status, body["output"]) == (200, "as published")
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0


def test_a_trickled_answer_fails_within_the_one_deadline():
    """A server that sends its answer a byte every 0.3 s (each read within the timeout, the whole
    answer in ~20 s) fails a 2 s probe after ~2 s, not after the answer is done."""
    answer = b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"status": "READY"}'
    listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    listener.bind(("::1", 0))
    listener.listen(4)
    stop = threading.Event()

    def trickle():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.recv(4096)
                for byte in answer:
                    if stop.wait(0.3):
                        break
                    try:
                        conn.sendall(bytes([byte]))
                    except OSError:
                        break

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        probe = [str(venv_bin("0.23.1") / "python"), str(PROBE)]
        started = time.monotonic()
        code, err = run_probe([*probe, "--timeout", "2"], listener.getsockname()[1])
        took = time.monotonic() - started
        assert code == 1 and "cannot read" in err and "within 2 s" in err, err
        assert took < 4.0, f"the probe took {took:.1f} s"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_a_bad_port_is_a_message_not_a_traceback():
    probe = [str(venv_bin("0.23.1") / "python"), str(PROBE)]
    for env_port, args, named in (("http", [], "PORT"), ("5000", ["--port", "99999"], "--port")):
        done = subprocess.run([*probe, *args], capture_output=True, text=True, timeout=10, env={"PORT": env_port})
        assert done.returncode != 0
        assert "Traceback" not in done.stderr
        assert f"{named} must be a TCP port number 1-65535" in done.stderr, done.stderr
