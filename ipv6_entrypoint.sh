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
#   COG_SHUTDOWN_TIMEOUT  seconds a running prediction gets to finish after SIGTERM/SIGINT (default 8)
#   SALADCOG_JOB_QUEUE=1  openai mode: run SaladCloud's salad-http-job-queue-worker beside it
#                      (from PATH, or the absolute path in SALADCOG_JOB_QUEUE_WORKER)
#   SALADCOG_SQS_WORKER=1 run `python -m saladcog.worker` (the SQS/S3 batch worker) beside it
#
# This script validates the environment (values are validated, never evaluated), finds the
# image's Python and execs the supervisor with it: src/saladcog/supervisor.py next to this file
# (/src in images built from this repository), ../lib/saladcog/supervisor.py (wrapper/Dockerfile
# installs it under /usr/local), or its text given as `--supervisor-code TEXT` first arguments
# (an unmodified image, saladcog.salad.unmodified_command). The supervisor starts the server and
# stays its parent: drain on SIGTERM, the whole tree stopped on every way out (docs/ipv6.md).
#
# Arguments are passed to `python -m cog.server.http` (a leading "python -m cog.server.http",
# the Cog images' CMD, is dropped).
set -eu

me=ipv6_entrypoint

die() {
    echo "$me: $*" >&2
    exit 64
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

# Sidecars: 0 or 1 each. The job-queue worker forwards its jobs to the door's queue route.
is_switch() {
    case $1 in
        '' | 0 | 1) return 0 ;;
    esac
    return 1
}
is_switch "${SALADCOG_JOB_QUEUE-}" ||
    die "SALADCOG_JOB_QUEUE must be 0 or 1, got '$SALADCOG_JOB_QUEUE'; refusing to start"
is_switch "${SALADCOG_SQS_WORKER-}" ||
    die "SALADCOG_SQS_WORKER must be 0 or 1, got '$SALADCOG_SQS_WORKER'; refusing to start"
sqs_worker=${SALADCOG_SQS_WORKER:-0}
job_queue_worker=""
if [ "${SALADCOG_JOB_QUEUE:-0}" = 1 ]; then
    [ "$mode" = openai ] ||
        die "SALADCOG_JOB_QUEUE=1 needs COG_IPV6_MODE=openai (its jobs go to the door's queue route), got '$mode'; refusing to start"
    if [ -n "${SALADCOG_JOB_QUEUE_WORKER-}" ]; then
        case $SALADCOG_JOB_QUEUE_WORKER in
            /*) ;;
            *) die "SALADCOG_JOB_QUEUE_WORKER must be an absolute path, got '$SALADCOG_JOB_QUEUE_WORKER'; refusing to start" ;;
        esac
        job_queue_worker=$SALADCOG_JOB_QUEUE_WORKER
    else
        job_queue_worker=$(command -v salad-http-job-queue-worker || true)
    fi
    [ -n "$job_queue_worker" ] && [ -x "$job_queue_worker" ] ||
        die "SALADCOG_JOB_QUEUE=1 needs salad-http-job-queue-worker on PATH or SALADCOG_JOB_QUEUE_WORKER, found '$job_queue_worker'; refusing to start"
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


# The supervisor: its text from the command line, or the file beside this script.
supervisor_code=""
if [ "${1-}" = --supervisor-code ]; then
    [ "$#" -ge 2 ] || die "--supervisor-code needs the supervisor's text"
    supervisor_code=$2
    shift 2
fi
here=$(dirname "$0")
supervisor=""
for candidate in "$here/src/saladcog/supervisor.py" "$here/../lib/saladcog/supervisor.py"; do
    if [ -f "$candidate" ]; then
        supervisor=$candidate
        break
    fi
done
[ -n "$supervisor_code" ] || [ -n "$supervisor" ] ||
    die "supervisor.py not found beside $0 (src/saladcog/ or ../lib/saladcog/)"

# Drop the Cog images' CMD if it was passed along (ENTRYPOINT replaced, CMD kept).
case ${1-} in
    python | python3 | */python | */python3)
        if [ "${2-}" = -m ] && [ "${3-}" = cog.server.http ]; then shift 3; fi ;;
esac

set -- --python "$python" --generation "$generation" --version "$version" --mode "$mode" \
    --port "$port" --internal-port "$internal" --grace "$grace" -- "$@"
if [ -n "$job_queue_worker" ]; then set -- --job-queue-worker "$job_queue_worker" "$@"; fi
if [ "$sqs_worker" = 1 ]; then set -- --sqs-worker "$@"; fi
if [ -n "$supervisor_code" ]; then
    exec "$python" -c "$supervisor_code" "$@"
fi
exec "$python" "$supervisor" "$@"
