"""The queue route alone, as the front door serves it, for a process of its own (as in an image):

    COG_URL=http://127.0.0.1:5001 python -m uvicorn --factory queue_door_app:create --app-dir bench --port 5000
"""

import os

import httpx
from starlette.applications import Starlette

from saladcog.door.routers import queue


def create() -> Starlette:
    app = Starlette(routes=queue.routes)
    app.state.cog = httpx.AsyncClient(base_url=os.environ["COG_URL"], timeout=httpx.Timeout(30))
    return app
