"""ipv6_entrypoint.sh against real Cog servers of three generations (each in its own virtualenv
from scripts/setup.sh), real socat, real HTTP over [::1] and 127.0.0.1."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.entrypoint_harness import (
    COG_VERSIONS,
    ECHO,
    Entrypoint,
    children,
    cmdline,
    free_port,
    health,
    predict,
    predict_in_background,
    request,
    session_left,
    venv_bin,
)
from saladcog.serve import CogServer
from saladcog.webhooks import Receiver

GENERATION = {"0.9.9": "legacy", "0.16.12": "uvicorn", "0.23.1": "coglet"}


@pytest.mark.parametrize("mode", ["bind", "relay"])
@pytest.mark.parametrize("cog_version", COG_VERSIONS)
def test_ready_and_predicts_on_both_stacks_then_stops_cleanly(cog_version, mode, tmp_path):
    with Entrypoint(cog_version, mode, tmp_path) as e:
        e.wait_health("READY", host="::1")
        assert health("127.0.0.1", e.port) == "READY"
        assert predict("::1", e.port, "over six")["output"] == "over six"
        assert predict("127.0.0.1", e.port, "over four")["output"] == "over four"
        assert f"cog {cog_version} ({GENERATION[cog_version]}), mode {mode}" in e.log()

        e.process.send_signal(signal.SIGTERM)
        assert e.wait_exit(timeout=15) == 0, e.log()
        # Nothing of the container is left running: server, worker, relays.
        assert session_left(e.process.pid) == []


@pytest.mark.parametrize("cog_version", COG_VERSIONS)
def test_auto_mode_binds_for_known_versions(cog_version, tmp_path):
    with Entrypoint(cog_version, "auto", tmp_path) as e:
        deadline = time.monotonic() + 30
        while "mode " not in e.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"cog {cog_version} ({GENERATION[cog_version]}), mode bind" in e.log()


def test_uvicorn_bind_is_ipv6_only_without_the_ipv4_leg(tmp_path):
    """cog 0.16 with --host :: refuses 127.0.0.1; the entrypoint's socat leg is what answers it.
    With no socat in the image, it says so and still serves [::1]."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("dirname", "sleep"):
        (tools / tool).symlink_to(shutil.which(tool))
    path = f"{venv_bin('0.16.12')}:{tools}"
    with Entrypoint("0.16.12", "bind", tmp_path, path_bin=path) as e:
        e.wait_health("READY", host="::1")
        assert predict("::1", e.port, "six")["output"] == "six"
        assert health("127.0.0.1", e.port) is None
        assert "127.0.0.1" in e.log() and "will not answer" in e.log()


def test_salads_sed_recipe_breaks_coglet_and_misses_ipv4_on_legacy(tmp_path):
    """SaladCloud's published `sed -i 's/0.0.0.0/::/g' .../cog/server/http.py`, applied to copies
    of the installed packages: cog 0.23.1 crashes at start; cog 0.9.9 serves IPv6 only.
    The entrypoint serves both stacks on both (test_ready_and_predicts_on_both_stacks...)."""
    results = {}
    for cog_version in ("0.23.1", "0.9.9"):
        bin_dir = venv_bin(cog_version)
        site = next((bin_dir.parent / "lib").glob("python3.*/site-packages"))
        patched = tmp_path / f"patched-{cog_version}"
        shutil.copytree(site / "cog", patched / "cog")
        subprocess.run(["sed", "-i", "s/0.0.0.0/::/g", str(patched / "cog" / "server" / "http.py")], check=True)
        workdir = tmp_path / f"src-{cog_version}"
        shutil.copytree(ECHO, workdir)
        port = free_port()
        env = {
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "PYTHONPATH": str(patched),
            "PORT": str(port),
            "COG_PREDICT_TYPE_STUB": "predict.py:Predictor",
        }
        server = subprocess.Popen(
            [str(bin_dir / "python"), "-m", "cog.server.http"],
            cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and server.poll() is None and health("::1", port) != "READY":
                time.sleep(0.1)
            results[cog_version] = (server.poll(), health("::1", port), health("127.0.0.1", port))
        finally:
            os.killpg(server.pid, signal.SIGKILL)
            output = server.communicate(timeout=10)[0].decode(errors="replace")
        if cog_version == "0.23.1":
            assert "invalid socket address" in output
    exit_code, v6, v4 = results["0.23.1"]
    assert exit_code not in (None, 0) and v6 is None and v4 is None
    assert results["0.9.9"] == (None, "READY", None)


def wait_gone(e: Entrypoint, timeout: float) -> tuple[int, float]:
    start = time.monotonic()
    code = e.wait_exit(timeout=timeout)
    return code, time.monotonic() - start


@pytest.mark.parametrize(
    "cog_version, mode, victim",
    [
        ("0.23.1", "relay", "cog.server.http"),  # the server
        ("0.23.1", "bind", "cog.server.http"),  # coglet bound to [::] itself
        ("0.23.1", "relay", "socat"),  # the IPv6 relay
        ("0.9.9", "bind", "legacy"),  # the patched legacy server (python -c)
        ("0.16.12", "bind", "socat"),  # the 127.0.0.1 leg of a uvicorn bind
    ],
)
def test_death_of_server_or_relay_ends_entrypoint_nonzero_within_2s(cog_version, mode, victim, tmp_path):
    with Entrypoint(cog_version, mode, tmp_path) as e:
        e.wait_health("READY", host="::1")
        word = "runpy" if victim == "legacy" else victim
        pid = e.find_child(word)
        os.kill(pid, signal.SIGKILL)
        code, seconds = wait_gone(e, timeout=10)
        assert code != 0
        assert seconds < 2.0, f"took {seconds:.2f} s"
        assert health("::1", e.port) is None


@pytest.mark.parametrize("cog_version", ["0.9.9", "0.23.1"])
def test_arguments_pass_through_and_the_cog_cmd_is_dropped(cog_version, tmp_path):
    # The Cog images' CMD given as arguments (ENTRYPOINT replaced, CMD kept) still starts.
    with Entrypoint(cog_version, "bind", tmp_path, args=["python", "-m", "cog.server.http"]) as e:
        e.wait_health("READY", host="::1")
    # Other arguments reach the server: an unknown flag makes its argument parser fail.
    with Entrypoint(cog_version, "relay", tmp_path, args=["--no-such-flag"]) as e:
        assert wait_gone(e, timeout=30)[0] != 0
        assert "--no-such-flag" in e.log()


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("PORT", "5000; touch {pwned}", "PORT must be a TCP port number"),
        ("PORT", "$(touch {pwned})", "PORT must be a TCP port number"),
        ("PORT", "99999", "PORT must be a TCP port number"),
        ("COG_IPV6_MODE", "bind`touch {pwned}`", "COG_IPV6_MODE must be auto, bind, relay or openai"),
        ("COG_INTERNAL_PORT", "1 && touch {pwned}", "COG_INTERNAL_PORT must be a TCP port number"),
        ("COG_PYTHON", "python; touch {pwned}", "COG_PYTHON must be an absolute path"),
        ("COG_SHUTDOWN_TIMEOUT", "5s; touch {pwned}", "COG_SHUTDOWN_TIMEOUT must be whole seconds"),
        ("COG_SHUTDOWN_TIMEOUT", "08", "COG_SHUTDOWN_TIMEOUT must be whole seconds"),  # octal in $((...))
        ("SALADCOG_SQS_WORKER", "1; touch {pwned}", "SALADCOG_SQS_WORKER must be 0 or 1"),
        ("SALADCOG_JOB_QUEUE", "yes", "SALADCOG_JOB_QUEUE must be 0 or 1"),
        ("SALADCOG_JOB_QUEUE", "1", "SALADCOG_JOB_QUEUE=1 needs COG_IPV6_MODE=openai"),  # mode is auto here
    ],
)
def test_hostile_environment_is_refused_and_nothing_runs(name, value, message, tmp_path):
    pwned = tmp_path / "pwned"
    marker = tmp_path / "setup-ran"
    e = Entrypoint("0.23.1", "auto", tmp_path, env={"ECHO_MARKER": str(marker)})
    e.env[name] = value.format(pwned=pwned)
    with e:
        assert e.wait_exit(timeout=5) == 64
        assert message in e.log() and "refusing to start" in e.log()
    assert not pwned.exists()
    assert not marker.exists()


@pytest.mark.parametrize("worker, message", [
    (None, "SALADCOG_JOB_QUEUE=1 needs salad-http-job-queue-worker on PATH or SALADCOG_JOB_QUEUE_WORKER"),
    ("bin/worker", "SALADCOG_JOB_QUEUE_WORKER must be an absolute path, got 'bin/worker'"),
])
def test_the_job_queue_needs_its_worker_binary(worker, message, tmp_path):
    env = {"SALADCOG_JOB_QUEUE": "1", **({"SALADCOG_JOB_QUEUE_WORKER": worker} if worker else {})}
    with Entrypoint("0.23.1", "openai", tmp_path, env=env) as e:
        assert e.wait_exit(timeout=5) == 64
        assert message in e.log() and "refusing to start" in e.log()


def busy_with_a_sync_prediction(e: Entrypoint, seconds: float) -> threading.Thread:
    """A sync prediction of `seconds` in flight on a thread; returns once the server is BUSY."""

    def hold():
        try:
            request("::1", e.port, "POST", "/predictions", {"input": {"text": "held", "seconds": seconds}}, timeout=60)
        except (OSError, ValueError, http.client.HTTPException):
            pass  # the server went away under it (no answer, or an empty one): what the test is about

    caller = threading.Thread(target=hold, daemon=True)
    caller.start()
    if e.cog_version == "0.9.9":
        time.sleep(1.0)  # cog 0.9.9 says READY while it predicts
    else:
        e.wait_health("BUSY", timeout=10)
    return caller


@pytest.mark.parametrize("cog_version, mode", [("0.23.1", "bind"), ("0.23.1", "relay"), ("0.9.9", "bind")])
def test_sigterm_during_a_sync_prediction_ends_everything_by_the_deadline(cog_version, mode, tmp_path):
    """Cog servers wait for an open sync request with no deadline: the entrypoint gives them
    COG_SHUTDOWN_TIMEOUT seconds, then kills the server and its worker and exits non-zero."""
    with Entrypoint(cog_version, mode, tmp_path, env={"COG_SHUTDOWN_TIMEOUT": "2"}) as e:
        e.wait_health("READY")
        caller = busy_with_a_sync_prediction(e, seconds=30)
        e.process.send_signal(signal.SIGTERM)
        code, seconds = wait_gone(e, timeout=15)
        assert code == 137, e.log()  # the server's status: killed
        assert 1.8 < seconds < 4.0, f"took {seconds:.2f} s"
        assert "still running 2 s after SIGTERM (COG_SHUTDOWN_TIMEOUT)" in e.log()
        assert session_left(e.process.pid) == []  # the worker too, though it was mid-prediction
        caller.join(timeout=5)
        assert not caller.is_alive()


def test_a_prediction_that_ends_within_the_deadline_stops_cleanly(tmp_path):
    with Entrypoint("0.23.1", "bind", tmp_path, env={"COG_SHUTDOWN_TIMEOUT": "10"}) as e:
        e.wait_health("READY")
        busy_with_a_sync_prediction(e, seconds=1.5)
        e.process.send_signal(signal.SIGTERM)
        code, seconds = wait_gone(e, timeout=15)
        assert code == 0 and seconds < 5.0, (code, seconds, e.log())
        assert session_left(e.process.pid) == []


@pytest.mark.parametrize(
    "cog_version, mode, message",
    [
        ("0.23.1", "bind", "the Cog server reports UNHEALTHY (its worker died); stopping so that the platform"),
        ("0.23.1", "relay", "the Cog server reports UNHEALTHY (its worker died); stopping so that the platform"),
        ("0.16.12", "bind", "the Cog server exited"),  # this generation exits by itself
    ],
)
def test_a_worker_killed_mid_prediction_ends_the_entrypoint_nonzero(cog_version, mode, message, tmp_path):
    """coglet stays up but reports UNHEALTHY for good: the entrypoint leaves by itself so that
    the platform replaces the instance, instead of waiting for a probe to notice."""
    with Entrypoint(cog_version, mode, tmp_path) as e:
        e.wait_health("READY")
        busy_with_a_sync_prediction(e, seconds=30)
        server = e.find_child("cog.server.http") if cog_version != "0.9.9" else e.find_child("runpy")
        workers = children(server)
        assert workers, "the server's worker process"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        code, seconds = wait_gone(e, timeout=20)
        assert code == (70 if "UNHEALTHY" in message else 1), e.log()
        assert seconds < 10.0, f"took {seconds:.2f} s"  # three health checks 2 s apart, then the stop
        assert message in e.log()
        assert session_left(e.process.pid) == []


def zombies_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if fields[0] == "Z" and int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"),
                    reason="needs root, unshare and nsenter to make the entrypoint PID 1")
def test_as_pid_1_without_an_init_orphans_are_reaped(tmp_path):
    """A container started without tini: the entrypoint is PID 1, and every orphan in the
    container becomes its child. It must reap them, or they stay zombies for good."""
    with Entrypoint("0.23.1", "bind", tmp_path, launcher=["unshare", "--pid", "--fork", "--mount-proc"]) as e:
        e.wait_health("READY")
        init = children(e.process.pid)[0]  # unshare's child: PID 1 inside the namespace
        nspid = next(line for line in Path(f"/proc/{init}/status").read_text().splitlines() if line.startswith("NSpid:"))
        assert nspid.split()[-1] == "1"  # its pid inside the container
        assert "supervisor.py" in " ".join(cmdline(init))  # the launcher exec'd it
        # Five orphans inside the container: each shell starts a short sleep and exits at once.
        for _ in range(5):
            subprocess.run(["nsenter", "--target", str(init), "--pid", "--mount", "sh", "-c", "sleep 0.3 &"],
                           check=True, timeout=10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if not zombies_of(init):
                break
        time.sleep(1.0)  # the sleeps have ended by now
        assert zombies_of(init) == []
        assert predict("::1", e.port, "still serving")["output"] == "still serving"


# Drain on SIGTERM -------------------------------------------------------------------------------

PROBE = Path(__file__).resolve().parents[1] / "src" / "saladcog" / "probe.py"


def readiness(port: int, tmpdir: Path) -> tuple[int, str]:
    """probe.py as Salad's exec probe runs it, a separate Python process in the container's env."""
    done = subprocess.run([sys.executable, str(PROBE), "--port", str(port)], capture_output=True, text=True,
                          timeout=10, env={**os.environ, "TMPDIR": str(tmpdir)})
    return done.returncode, done.stderr


def test_sigterm_in_relay_mode_delivers_the_running_sync_answer_and_refuses_new_work(tmp_path):
    """The drain with socat in front: readiness fails at once, socat's listener stops (new
    connections are refused) while its forked child carries the open request; the answer arrives
    after the SIGTERM, then everything stops with status 0. Default grace: 8 s."""
    with Entrypoint("0.23.1", "relay", tmp_path, env={"TMPDIR": str(tmp_path)}) as e:
        e.wait_health("READY")
        caller, result = predict_in_background(e.port, "answered after SIGTERM", seconds=3)
        e.wait_health("BUSY", timeout=10)
        e.process.send_signal(signal.SIGTERM)
        code, err = readiness(e.port, tmp_path)
        assert code == 1 and "draining" in err, err
        deadline = time.monotonic() + 5
        while health("::1", e.port) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(ConnectionRefusedError):
            request("::1", e.port, "POST", "/predictions", {"input": {"text": "too late"}}, timeout=5)
        caller.join(timeout=30)
        status, body = result["answer"]
        assert (status, body["status"], body["output"]) == (200, "succeeded", "answered after SIGTERM")
        assert e.wait_exit(timeout=15) == 0, e.log()
        assert "up to 8 s for the running prediction" in e.log()
        assert session_left(e.process.pid) == []
        assert not (tmp_path / f"saladcog-{e.port}.draining").exists()


def test_sigterm_in_bind_mode_lets_an_async_prediction_finish_and_its_webhook_arrive(tmp_path):
    """Cog drops a running async prediction on SIGTERM. The supervisor holds the SIGTERM back
    until the server is no longer BUSY (within the grace), so the prediction completes and its
    completed webhook is delivered; meanwhile a new prediction is refused (409, one slot)."""
    with Receiver(tmp_path / "hooks.sqlite", host="::1") as rx, \
            Entrypoint("0.23.1", "bind", tmp_path, env={"TMPDIR": str(tmp_path)}) as e:
        e.wait_health("READY")
        started = httpx.post(f"http://[::1]:{e.port}/predictions", headers={"Prefer": "respond-async"},
                             json={"id": "drained", "input": {"text": "finished", "seconds": 2},
                                   "webhook": rx.url, "webhook_events_filter": ["completed"]})
        assert started.status_code == 202
        e.wait_health("BUSY", timeout=10)
        e.process.send_signal(signal.SIGTERM)
        code, err = readiness(e.port, tmp_path)
        assert code == 1 and "draining" in err, err
        status, _ = request("::1", e.port, "POST", "/predictions", {"input": {"text": "too late"}})
        assert status == 409
        assert e.wait_exit(timeout=15) == 0, e.log()
        completed = rx.store.completed("drained")
        assert completed is not None and (completed["status"], completed["output"]) == ("succeeded", "finished")
        assert session_left(e.process.pid) == []


def test_sigterm_during_setup_stops_the_whole_tree(tmp_path):
    """Issue 15: SIGTERM while the model loads left coglet's worker running (its server exited in
    time, and the worker, orphaned, was never killed). `saladcog serve --front-door relay` on a
    workstation, where nothing else would stop it: every process of the tree ends."""
    runner = f"{ECHO / 'predict.py'}:Predictor"
    in_setup = tmp_path / "in-setup"
    env = {"ECHO_SETUP_SECONDS": "30", "ECHO_MARKER": str(in_setup), "TMPDIR": str(tmp_path)}
    with CogServer(runner, front_door="relay", env=env) as server:
        deadline = time.monotonic() + 30
        while not in_setup.exists() and time.monotonic() < deadline:  # the worker runs setup()
            time.sleep(0.05)
        assert server.health() == "STARTING"
        supervisor = server.process.pid
        cog = next(p for p in children(supervisor) if "cog.server.http" in cmdline(p))
        tree = [*children(supervisor), *children(cog)]
        assert len(tree) >= 3, tree  # server, socat, worker
        os.kill(supervisor, signal.SIGTERM)  # the entrypoint alone, as tini or a terminal sends it
        server.process.wait(timeout=15)
        deadline = time.monotonic() + 5
        while any(Path(f"/proc/{pid}").exists() for pid in tree) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in tree if Path(f"/proc/{pid}").exists()] == []
