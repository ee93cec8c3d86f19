"""The batch node: `saladcog worker` beside a Cog server, fed by an SQS queue, writing results to
S3-compatible storage (docs/worker.md).

    node.py      the worker: fetchers, one caller to the server, heartbeat, reporter
    fetch.py     one input downloaded within the input limits
    prefetch.py  the bound on held inputs and bytes on disk
    jobs.py      the message format and result names
    settings.py  the environment it reads
    submit.py    the submitting side: submit, status, collect
"""
