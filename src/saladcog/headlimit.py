"""uvicorn settings that bound a request's head (request line and headers) for saladcog's servers
(the front door, `saladcog receive`, the `saladcog queue --webhook-url` receiver).

uvicorn's default parser (httptools) holds every header of a request however many there are:
a million headers (~14 MB) cost ~115 MB before anything is refused. h11 keeps at most
`h11_max_incomplete_event_size` bytes of a head it has not finished reading, and answers 400
past it; 64 KiB is far above what browsers and SDKs send (nginx's default is 32 KiB).
"""

UVICORN_HEAD_LIMIT = {"http": "h11", "h11_max_incomplete_event_size": 64 * 1024}
