"""Supervisor of a Cog server behind SaladCloud's IPv6 gateway, started by ipv6_entrypoint.sh.

The launcher validates the environment and finds the image's Python; this file runs with that
Python, standard library only and no imports from this package: it is copied into any Cog image
(wrapper/Dockerfile: /usr/local/lib/saladcog/supervisor.py) or passed whole to `python -c`.

It starts the Cog server (IPv6 bind or loopback behind a front: socat or the OpenAI door), the
127.0.0.1 leg of a uvicorn bind, and sidecars (SaladCloud's job-queue worker, the SQS worker),
then stays their parent:

- SIGTERM / SIGINT: a drain. Readiness fails at once (a marker file that probe.py reads), new
  work is refused (the door drains itself on SIGTERM; socat's listener stops, its forked children
  keep the open connections; sidecars get SIGTERM and stop taking jobs), the running prediction
  may finish until the grace (COG_SHUTDOWN_TIMEOUT) ends; only then the server gets SIGTERM.
  Exit status: the server's, or 137 when it had to be killed.
- The server, a front or a sidecar ends on its own: the rest is stopped, exit non-zero.
- Three UNHEALTHY / DEFUNCT answers in a row from /health-check (the worker died): exit 70.
- On every path out the whole tree is stopped: the supervisor is a child subreaper, so a
  server's worker orphaned by its server's exit comes back to it and is killed too. Waiting
  reaps every child, orphans included (as PID 1 without tini no zombie stays).

    python supervisor.py --python P --generation coglet --version 0.23.1 --mode auto
                         --port 5000 --internal-port 5001 --grace 8 [--job-queue-worker PATH]
                         [--sqs-worker] [-- server arguments]
"""

import argparse
import http.client
import json
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time

try:
    import ctypes
except ImportError:  # a Python built without libffi: no subreaper, the process tree still is walked
    ctypes = None

ME = "ipv6_entrypoint"
# The OpenAI front door: `python -m DOOR_MODULE --port P --upstream URL` (docs/openai.md).
DOOR_MODULE = "saladcog.door"
SQS_WORKER_MODULE = "saladcog.worker"
TICK = 0.5  # seconds between checks that every child still runs
HEALTH_EVERY = 2.0  # seconds between /health-check reads
SICK_IN_A_ROW = 3  # UNHEALTHY / DEFUNCT answers before the container ends
DRAIN_POLL = 0.2  # seconds between checks during a drain
SHORT_WAIT = 1.0  # seconds a process gets after SIGTERM when nothing is left to wait for
# socat options: nodelay on both legs (socat's default Nagle costs ~25 ms per small keep-alive
# request), a 256 KiB buffer (twice the throughput on multi-MB bodies). bench/relay.py.
SOCAT = ["socat", "-b", "262144"]
PR_SET_CHILD_SUBREAPER = 36

# cog <= 0.9.9 passes host="0.0.0.0" to uvicorn.Config. Replace it in memory, so the image's
# files stay as they were (read-only file systems, non-root users, and relay mode all keep working).
LEGACY_PY = """
import runpy, sys
import uvicorn
host = sys.argv.pop(1)
init = uvicorn.Config.__init__
def patched(self, *args, **kwargs):
    if kwargs.get("host") == "0.0.0.0":
        kwargs["host"] = host
    init(self, *args, **kwargs)
uvicorn.Config.__init__ = patched
sys.argv[0] = "cog.server.http"
runpy.run_module("cog.server.http", run_name="__main__", alter_sys=True)
"""


def say(message):
    print("%s: %s" % (ME, message), file=sys.stderr, flush=True)


def drain_marker(port):
    """The file whose presence fails readiness. probe.py computes the same path (it cannot import
    this file: each is copied alone into images)."""
    return os.path.join(tempfile.gettempdir(), "saladcog-%d.draining" % port)


def exit_code(status):
    """A wait status as a shell reports it: the exit code, or 128 + the signal that ended it."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def server_command(python, generation, mode, args):
    """The Cog server's command line for its generation: loopback (relay, openai) or [::] (bind)."""
    if mode == "bind":
        if generation == "legacy":
            return [python, "-c", LEGACY_PY, "::", *args]
        host = "[::]" if generation == "coglet" else "::"  # coglet needs the brackets, uvicorn refuses them
        return [python, "-m", "cog.server.http", "--host", host, *args]
    if generation == "legacy":
        return [python, "-c", LEGACY_PY, "127.0.0.1", *args]
    if generation in ("uvicorn", "coglet"):
        return [python, "-m", "cog.server.http", "--host", "127.0.0.1", *args]
    return [python, "-m", "cog.server.http", *args]  # unknown: its default host, 0.0.0.0 so far


def health(host, port, timeout=1.0):
    """The status from the server's /health-check, "" when it cannot tell."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/health-check")
        status = json.loads(conn.getresponse().read(1 << 24)).get("status", "")
        return status if isinstance(status, str) else ""
    except (OSError, ValueError, AttributeError, http.client.HTTPException):
        return ""
    finally:
        conn.close()


def listening(host, port):
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def children_of(pid):
    """Direct children of `pid`, from every thread (coglet starts its worker from a runtime thread)."""
    found = []
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return found
    for task in tasks:
        try:
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                found += [int(p) for p in f.read().split()]
        except (OSError, ValueError):
            continue
    return found


def descendants(pid):
    """Every process under `pid`, parents before their children (bounded: a process is visited once)."""
    found, queue = [], children_of(pid)
    while queue and len(found) < 100000:
        child = queue.pop(0)
        if child not in found:
            found.append(child)
            queue += children_of(child)
    return found


def become_subreaper():
    """Orphans of the tree (a worker whose server exited) are re-parented here, not to PID 1,
    so they can be found and stopped. Linux only (Cog images are Linux)."""
    if ctypes is not None:
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        except (OSError, AttributeError):
            pass


class Child:
    def __init__(self, name, pid):
        self.name = name
        self.pid = pid
        self.status = None  # the wait status once it has ended

    @property
    def running(self):
        return self.status is None


class Supervisor:
    def __init__(self, options):
        self.options = options
        self.children = []
        self.server = None
        self.fronts = []  # the door or socat in front, the 127.0.0.1 leg of a uvicorn bind
        self.leg = None  # that leg: it keeps serving in-container callers until the server is gone
        self.door = None
        self.sidecars = []
        self.signalled = None
        self.marker = drain_marker(options.port)
        self.leg_pending = False
        self._wake_r, self._wake_w = os.pipe()

    # Processes -----------------------------------------------------------------------------

    def spawn(self, name, argv, env=None):
        """Starts `argv` in the supervisor's own process group, so that whoever stops the group
        from outside (a test harness, `saladcog serve`) reaches every process."""
        pid = os.fork()
        if pid == 0:
            try:
                os.execvpe(argv[0], argv, env if env is not None else os.environ)
            except OSError as e:
                os.write(2, ("%s: cannot start %s: %s\n" % (ME, argv[0], e)).encode())
            os._exit(127)
        child = Child(name, pid)
        self.children.append(child)
        return child

    def reap(self):
        """Collects every ended child, ours or an orphan handed to us."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            for child in self.children:
                if child.pid == pid:
                    child.status = status

    def send(self, child, sig):
        if child is not None and child.running:
            try:
                os.kill(child.pid, sig)
            except ProcessLookupError:
                pass

    def wait(self, seconds):
        """Sleeps until a signal or a child's exit wakes us, or `seconds` pass; then reaps."""
        try:
            ready, _, _ = select.select([self._wake_r], [], [], max(seconds, 0))
            if ready:
                os.read(self._wake_r, 4096)
        except InterruptedError:
            pass
        self.reap()

    def wait_for(self, condition, deadline):
        while not condition() and time.monotonic() < deadline:
            self.wait(min(DRAIN_POLL, deadline - time.monotonic()))
        return condition()

    def kill_tree(self):
        """SIGKILL for everything under the supervisor: STOP first, so that nothing starts anything
        new meanwhile."""
        tree = descendants(os.getpid())
        for pid in tree:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while descendants(os.getpid()) and time.monotonic() < deadline:
            self.wait(0.05)
        self.reap()

    def stop_everything(self, wait):
        """SIGTERM every child still running, up to `wait` seconds for the tree to end by itself
        (socat's children finish their connections), then kill what is left."""
        for child in self.children:
            self.send(child, signal.SIGTERM)
        self.wait_for(lambda: not descendants(os.getpid()), time.monotonic() + wait)
        self.kill_tree()
        try:
            os.unlink(self.marker)
        except OSError:
            pass

    # Start ---------------------------------------------------------------------------------

    def start(self):
        o = self.options
        server_port = o.port if o.mode == "bind" else o.internal_port
        self.health_host = "::1" if o.mode == "bind" else "127.0.0.1"
        self.server_port = server_port
        env = dict(os.environ, PORT=str(server_port))
        self.server = self.spawn("Cog server", server_command(o.python, o.generation, o.mode, o.args), env)
        if o.mode == "openai":
            say("OpenAI audio API front door on [::]:%d" % o.port)
            self.door = self.spawn("front door", [o.python, "-m", DOOR_MODULE, "--port", str(o.port),
                                                  "--upstream", "http://127.0.0.1:%d" % o.internal_port])
            self.fronts.append(self.door)
        elif o.mode == "relay":
            self.fronts.append(self.spawn("relay", SOCAT + [
                "TCP6-LISTEN:%d,ipv6only=0,reuseaddr,fork,nodelay" % o.port,
                "TCP4:127.0.0.1:%d,nodelay" % o.internal_port]))
        elif o.generation != "coglet":  # coglet on [::] is dual-stack: no leg needed
            if shutil.which("socat"):
                self.leg_pending = True  # once uvicorn listens: cog <= 0.9.9 won't start with 127.0.0.1:PORT taken
            else:
                say("socat not installed: 127.0.0.1:%d will not answer (uvicorn on :: is IPv6-only)" % o.port)
        if o.job_queue_worker:
            self.sidecars.append(self.spawn("job-queue worker", [o.job_queue_worker]))
        if o.sqs_worker:
            # The worker calls the Cog server itself, not the door in front of it.
            worker_env = dict(os.environ)
            worker_env.setdefault("SALADCOG_COG_URL", "http://127.0.0.1:%d" % server_port)
            self.sidecars.append(self.spawn("SQS worker", [o.python, "-m", SQS_WORKER_MODULE], worker_env))

    def start_leg(self):
        self.leg_pending = False
        self.leg = self.spawn("127.0.0.1 relay", SOCAT + [
            "TCP4-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork,nodelay" % self.options.port,
            "TCP6:[::1]:%d,nodelay" % self.options.port])
        self.fronts.append(self.leg)

    # Run -----------------------------------------------------------------------------------

    def on_signal(self, signum, frame):
        if self.signalled is None:
            self.signalled = signal.Signals(signum).name
            # Readiness fails the moment the signal arrives, before the main loop wakes.
            try:
                with open(self.marker, "w") as f:
                    f.write("%d\n" % os.getpid())
            except OSError as e:
                say("cannot write the drain marker %s: %s" % (self.marker, e))

    def run(self):
        try:
            os.unlink(self.marker)  # a previous run's
        except OSError:
            pass
        become_subreaper()
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes the loop when a child ends
        # The door and the sidecars drain on SIGTERM within the same grace (the launcher's default
        # applied when the variable is unset).
        os.environ["COG_SHUTDOWN_TIMEOUT"] = str(self.options.grace)
        self.start()
        sick = 0
        next_health = time.monotonic() + HEALTH_EVERY
        while True:
            if self.signalled:
                return self.drain()
            if not self.server.running:
                code = exit_code(self.server.status)
                say("the Cog server exited (status %d); stopping" % code)
                self.stop_everything(SHORT_WAIT)
                return code or 1
            for child in self.fronts + self.sidecars:
                if not child.running:
                    say("the %s exited (status %d); stopping the Cog server" % (child.name, exit_code(child.status)))
                    self.stop_everything(SHORT_WAIT)
                    return 1
            if self.leg_pending and listening("::1", self.options.port):
                self.start_leg()
            if time.monotonic() >= next_health:
                next_health = time.monotonic() + HEALTH_EVERY
                state = health(self.health_host, self.server_port)
                sick = sick + 1 if state in ("UNHEALTHY", "DEFUNCT") else 0
                if sick >= SICK_IN_A_ROW:
                    say("the Cog server reports %s (its worker died); stopping so that the platform "
                        "replaces this instance" % state)
                    self.stop_everything(SHORT_WAIT)
                    return 70
            self.wait(TICK)

    def drain(self):
        """Readiness already fails (on_signal). New work is refused, the running prediction gets
        until the grace ends, then the server stops; whatever outlives it is killed."""
        o, sig = self.options, self.signalled
        deadline = time.monotonic() + o.grace
        say("SIG%s: draining (readiness fails; up to %d s for the running prediction, "
            "COG_SHUTDOWN_TIMEOUT)" % (sig[3:], o.grace))
        for child in self.sidecars + self.fronts:
            # The door answers 503 and lets its predictions finish; socat's listener ends and
            # its forked children keep the open connections; sidecars stop taking jobs.
            if child is not self.leg:
                self.send(child, signal.SIGTERM)
        clients = self.sidecars + ([self.door] if self.door else [])

        def settled():
            if not self.server.running:
                return True
            if any(c.running for c in clients):
                return False
            return health(self.health_host, self.server_port) != "BUSY"

        self.wait_for(settled, deadline)
        self.send(self.server, signal.SIGTERM)
        # Cog servers finish an open sync request before they exit (cog 0.9.9 says READY while it
        # predicts), and past the grace the door sends its failed webhooks: the server and the
        # clients keep what is left of the grace, at least SHORT_WAIT.
        self.wait_for(lambda: not self.server.running and not any(c.running for c in clients),
                      max(deadline, time.monotonic() + SHORT_WAIT))
        if self.server.running:
            say("the Cog server is still running %d s after SIG%s (COG_SHUTDOWN_TIMEOUT); killing it "
                "and its worker" % (o.grace, sig[3:]))
            self.stop_everything(0)
            return 137
        self.stop_everything(SHORT_WAIT)  # socat's children deliver the last answers
        return exit_code(self.server.status)


def parse(argv):
    parser = argparse.ArgumentParser(prog="supervisor.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", required=True, help="the image's Python (runs the server)")
    parser.add_argument("--generation", required=True, choices=("legacy", "uvicorn", "coglet", "unknown"))
    parser.add_argument("--version", default="?", help="the installed cog's version, for the log")
    parser.add_argument("--mode", required=True, choices=("auto", "bind", "relay", "openai"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--internal-port", type=int, required=True)
    parser.add_argument("--grace", type=int, required=True, help="COG_SHUTDOWN_TIMEOUT, seconds")
    parser.add_argument("--job-queue-worker", help="path of salad-http-job-queue-worker (openai mode)")
    parser.add_argument("--sqs-worker", action="store_true", help="run python -m %s" % SQS_WORKER_MODULE)
    parser.add_argument("args", nargs="*", help="arguments for python -m cog.server.http")
    options = parser.parse_args(argv)
    for name in ("port", "internal_port"):
        if not 1 <= getattr(options, name) <= 65535:
            parser.error("--%s must be a TCP port number 1-65535" % name.replace("_", "-"))
    if options.port == options.internal_port:
        parser.error("--internal-port must differ from --port")
    if options.grace < 0:
        parser.error("--grace must be 0 or more seconds")
    return options


def main(argv=None):
    o = parse(argv)
    if o.mode == "auto":
        o.mode = "relay" if o.generation == "unknown" else "bind"
    if o.mode == "bind" and o.generation == "unknown":
        say("cog %s: unknown server generation, cannot bind IPv6 (use COG_IPV6_MODE=relay)" % o.version)
        return 64
    if o.mode == "relay" and not shutil.which("socat"):
        say("relay mode needs socat, which is not installed")
        return 64
    if o.job_queue_worker and o.mode != "openai":
        say("SALADCOG_JOB_QUEUE=1 needs COG_IPV6_MODE=openai (its jobs go to the door's queue route); "
            "refusing to start")
        return 64
    say("cog %s (%s), mode %s, port %d, python %s" % (o.version, o.generation, o.mode, o.port, o.python))
    return Supervisor(o).run()


if __name__ == "__main__":
    sys.exit(main())
