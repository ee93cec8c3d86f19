"""The front door with its queue route, for a process of its own (as in an image):

    COG_URL=http://127.0.0.1:5001 python -m uvicorn --factory queue_door_app:create --app-dir bench --port 5000
"""

import os

from starlette.applications import Starlette

from saladcog.door.app import create_app


def create() -> Starlette:
    return create_app(os.environ["COG_URL"], model="whisper")
