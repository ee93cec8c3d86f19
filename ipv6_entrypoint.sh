#!/bin/sh
# IPv6 front door for any Cog image: serve the Cog HTTP server on [::]:$PORT.
#
#   COG_IPV6_MODE  auto (default) | bind | relay | openai
#     bind   the server itself listens on IPv6, done the way its generation allows:
#            cog <= 0.9.9 (host hard-coded "0.0.0.0"): the same line patched in memory;
#            cog 0.9.10 - 0.16.x (uvicorn): --host ::;   coglet (0.17 and later): --host [::].
#            uvicorn listens IPv6-only, so a socat leg keeps 127.0.0.1:$PORT answering.
#     relay  the server on 127.0.0.1:$COG_INTERNAL_PORT, socat from [::]:$PORT (both stacks).
#     auto   bind when the installed cog's version is known, relay otherwise.
#     openai relay, with saladcog's OpenAI audio API front door in socat's place (saladcog
#            images only: docs/openai.md); Cog's own API passes through it unchanged.
#   PORT               public port (default 5000)
#   COG_INTERNAL_PORT  relay mode: the server's loopback port (default PORT+1)
#   COG_PYTHON         absolute path of the image's Python (default: found as Cog lays it out)
#   COG_SHUTDOWN_TIMEOUT  seconds the server gets to stop after SIGTERM/SIGINT (default 8)
#
# Arguments are passed to `python -m cog.server.http` (a leading "python -m cog.server.http",
# the Cog images' CMD, is dropped). The script stays the server's parent: SIGTERM and SIGINT go
# to the server, which gets COG_SHUTDOWN_TIMEOUT seconds to finish (Cog servers wait for an open
# sync request with no deadline); then it and its worker are killed and the exit is non-zero.
# When the server or a relay ends on its own, or the server reports UNHEALTHY or DEFUNCT (its
# worker died), the rest is stopped and the script exits non-zero so that the platform replaces
# the instance. As PID 1 it also reaps orphaned processes. Environment values are validated,
# never evaluated.
set -eu

me=ipv6_entrypoint

die() {
    echo "$me: $*" >&2
    exit 64
}

say() {
    echo "$me: $*" >&2
}

# Validate every input before anything starts.
is_port() {
    case $1 in
        '' | *[!0-9]* | 0*) return 1 ;;
    esac
    [ "${#1}" -le 5 ] && [ "$1" -le 65535 ]
}

port=${PORT-5000}
is_port "$port" || die "PORT must be a TCP port number 1-65535, got '$port'; refusing to start"

mode=${COG_IPV6_MODE:-auto}
case $mode in
    auto | bind | relay | openai) ;;
    *) die "COG_IPV6_MODE must be auto, bind, relay or openai, got '$mode'; refusing to start" ;;
esac
# openai is relay mode with another program in front: from here on, mode is relay.
front=socat
if [ "$mode" = openai ]; then mode=relay front=openai; fi

if [ -n "${COG_INTERNAL_PORT-}" ]; then
    internal=$COG_INTERNAL_PORT
    is_port "$internal" || die "COG_INTERNAL_PORT must be a TCP port number 1-65535, got '$internal'; refusing to start"
elif [ "$port" -lt 65535 ]; then
    internal=$((port + 1))
else
    internal=$((port - 1))
fi
[ "$internal" != "$port" ] || die "COG_INTERNAL_PORT must differ from PORT ($port); refusing to start"

grace=${COG_SHUTDOWN_TIMEOUT-8}
case $grace in
    '' | *[!0-9]* | 0?* | ?????*) die "COG_SHUTDOWN_TIMEOUT must be whole seconds 0-9999, got '$grace'; refusing to start" ;;
esac

if [ -n "${COG_PYTHON-}" ]; then
    case $COG_PYTHON in
        /*) ;;
        *) die "COG_PYTHON must be an absolute path, got '$COG_PYTHON'; refusing to start" ;;
    esac
    [ -x "$COG_PYTHON" ] || die "COG_PYTHON '$COG_PYTHON' is not an executable file; refusing to start"
fi

# Asks a Python for its cog version and server generation; fails if it has no cog.
version_py='
import re
try:
    from importlib.metadata import version
    v = version("cog")
except Exception:
    import cog
    v = cog.__version__
try:
    import coglet
    has_coglet = True
except ImportError:
    has_coglet = False
m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", v)
gen = "unknown"
if m:
    t = (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    if t <= (0, 9, 9):
        gen = "legacy"
    elif t < (0, 16, 0):
        gen = "uvicorn"
    elif t < (0, 17, 0):
        gen = "coglet" if has_coglet else "uvicorn"
    elif has_coglet:
        gen = "coglet"
print(v, gen)
'

# cog <= 0.9.9 passes host="0.0.0.0" to uvicorn.Config. Replace it in memory, so the image's
# files stay as they were (read-only file systems, non-root users, and relay mode all keep working).
legacy_py='
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
'

# The image's Python, in the order Cog lays it out: its CMD runs `python` from PATH (a pyenv
# shim up to cog 0.16, a uv-managed Python linked into /usr/local/bin after), and /usr/bin/python3
# is linked to the same interpreter.
python=""
info=""
for candidate in "${COG_PYTHON-}" "$(command -v python || true)" /root/.pyenv/shims/python \
    /usr/local/bin/python "$(command -v python3 || true)" /usr/bin/python3; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    if info=$("$candidate" -c "$version_py" 2>/dev/null); then
        python=$candidate
        break
    fi
done
[ -n "$python" ] || die "no Python with the cog package found (set COG_PYTHON)"
version=${info% *}
generation=${info#* }

# coglet starts its worker with the first `python` on PATH: make that the one found here.
PATH="$(dirname "$python"):$PATH"
export PATH

if [ "$mode" = auto ]; then
    if [ "$generation" = unknown ]; then mode=relay; else mode=bind; fi
fi
if [ "$mode" = bind ] && [ "$generation" = unknown ]; then
    die "cog $version: unknown server generation, cannot bind IPv6 (use COG_IPV6_MODE=relay)"
fi

# Drop the Cog images' CMD if it was passed along (ENTRYPOINT replaced, CMD kept).
case ${1-} in
    python | python3 | */python | */python3)
        if [ "${2-}" = -m ] && [ "${3-}" = cog.server.http ]; then shift 3; fi ;;
esac

have_socat=yes
command -v socat >/dev/null 2>&1 || have_socat=""

# Generation-specific server command, as the positional parameters; the relay target goes
# on loopback (IPv4) and bind mode on [::].
if [ "$mode" = relay ]; then
    [ -n "$have_socat" ] || [ "$front" = openai ] || die "relay mode needs socat, which is not installed"
    host4=127.0.0.1
    server_port=$internal
    case $generation in
        legacy) set -- -c "$legacy_py" "$host4" "$@" ;;
        uvicorn | coglet) set -- -m cog.server.http --host "$host4" "$@" ;;
        *) set -- -m cog.server.http "$@" ;; # unknown: its default host, 0.0.0.0 so far
    esac
else
    server_port=$port
    case $generation in
        legacy) set -- -c "$legacy_py" "::" "$@" ;;
        uvicorn) set -- -m cog.server.http --host "::" "$@" ;;
        coglet) set -- -m cog.server.http --host "[::]" "$@" ;;
    esac
fi
say "cog $version ($generation), mode $mode, port $port, python $python"

# The server's own health: prints the status from /health-check, nothing if it cannot tell.
health_py='
import http.client, json, sys
try:
    conn = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=2)
    conn.request("GET", "/health-check")
    print(json.loads(conn.getresponse().read()).get("status", ""))
except Exception:
    pass
'
if [ "$mode" = relay ]; then health_host=$host4; else health_host=::1; fi

server=""
relays=""
stopping=""
unhealthy=""

# shellcheck disable=SC2329 # invoked by the traps below
on_signal() {
    stopping=$1
    for pid in $relays; do kill -TERM "$pid" 2>/dev/null || true; done
    if [ -n "$server" ]; then kill "-$1" "$server" 2>/dev/null || true; fi
}
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT

# Interruptible pause: `wait` returns at once when a trapped signal arrives. Every wait also
# reaps whichever child has ended, orphans that PID 1 inherits included.
pause() {
    sleep "$1" &
    wait "$!" || true
}

alive() {
    kill -0 "$1" 2>/dev/null
}

# Waits up to $1 seconds for the server to exit; fails if it is still running then.
server_gone_within() {
    ticks=$(($1 * 5))
    while alive "$server"; do
        [ "$ticks" -gt 0 ] || return 1
        ticks=$((ticks - 1))
        pause 0.2
    done
}

# SIGKILL for a process and everything under it, children first. A Cog server's worker is its
# child and outlives it, so killing the server alone would leave the worker running. STOP first,
# so that nothing in the tree starts anything new meanwhile. (A kernel without /proc/*/children
# gets the server killed alone; as PID 1, this script's exit then ends the rest.)
kill_tree() {
    kill -STOP "$1" 2>/dev/null || return 0
    children=$(cat /proc/"$1"/task/*/children 2>/dev/null || true)
    for child in $children; do kill_tree "$child"; done
    kill -KILL "$1" 2>/dev/null || true
}

# Ends the script once the server is to stop: on a signal with the server's status if it
# stopped within COG_SHUTDOWN_TIMEOUT, otherwise (killed, unhealthy, died on its own) non-zero.
finish() {
    status=0
    if [ -n "$stopping" ] && ! server_gone_within "$grace"; then
        say "the Cog server is still running $grace s after SIG$stopping (COG_SHUTDOWN_TIMEOUT); killing it and its worker"
        kill_tree "$server"
    fi
    wait "$server" || status=$?
    for pid in $relays; do kill -TERM "$pid" 2>/dev/null || true; done
    if [ -n "$unhealthy" ]; then
        exit 70
    elif [ -n "$stopping" ]; then
        exit "$status"
    fi
    say "the Cog server exited (status $status); stopping"
    [ "$status" -ne 0 ] || status=1
    exit "$status"
}

PORT=$server_port "$python" "$@" &
server=$!

# socat options: nodelay on both legs (socat's default Nagle costs ~25 ms per small
# keep-alive request), a 256 KiB buffer (twice the throughput on multi-MB bodies).
if [ "$front" = openai ]; then
    say "OpenAI audio API front door on [::]:$port"
    "$python" -m saladcog.door --port "$port" --upstream "http://127.0.0.1:$internal" &
    relays=$!
elif [ "$mode" = relay ]; then
    socat -b 262144 "TCP6-LISTEN:$port,ipv6only=0,reuseaddr,fork,nodelay" \
        "TCP4:127.0.0.1:$internal,nodelay" &
    relays=$!
elif [ "$generation" = coglet ]; then
    : # coglet on [::] is dual-stack: no relay needed
elif [ -n "$have_socat" ]; then
    # uvicorn on :: is IPv6-only. Once it listens (cog <= 0.9.9 refuses to start when
    # 127.0.0.1:$PORT is taken), relay 127.0.0.1:$PORT to [::1] for clients in the container.
    until socat -u OPEN:/dev/null "TCP6:[::1]:$port,connect-timeout=1" 2>/dev/null; do
        if [ -n "$stopping" ] || ! alive "$server"; then finish; fi
        pause 0.2
    done
    if [ -n "$stopping" ]; then finish; fi
    socat -b 262144 "TCP4-LISTEN:$port,bind=127.0.0.1,reuseaddr,fork,nodelay" \
        "TCP6:[::1]:$port,nodelay" &
    relays=$!
else
    say "socat not installed: 127.0.0.1:$port will not answer (uvicorn on :: is IPv6-only)"
fi

# Every 0.5 s: the server and relays still run. Every 2 s: the server's health. A worker that
# died mid-prediction leaves the server up but UNHEALTHY (or DEFUNCT) for good; three such
# answers in a row, so that one failed run of a model's own healthcheck() does not end it.
tick=0
sick=0
while [ -z "$stopping" ] && alive "$server"; do
    for pid in $relays; do
        if ! alive "$pid"; then
            wait "$pid" || true
            say "the relay exited; stopping the Cog server"
            relays=""
            kill -TERM "$server" 2>/dev/null || true
            server_gone_within 1 || kill_tree "$server"
            wait "$server" || true
            exit 1
        fi
    done
    tick=$((tick + 1))
    if [ $((tick % 4)) -eq 0 ]; then
        state=$("$python" -c "$health_py" "$health_host" "$server_port" 2>/dev/null || true)
        case $state in
            UNHEALTHY | DEFUNCT) sick=$((sick + 1)) ;;
            *) sick=0 ;;
        esac
        if [ "$sick" -ge 3 ]; then
            say "the Cog server reports $state (its worker died); stopping so that the platform replaces this instance"
            unhealthy=$state
            stopping=TERM
            kill -TERM "$server" 2>/dev/null || true
        fi
    fi
    [ -n "$stopping" ] || pause 0.5
done
finish
