"""The OpenAI front door's app in process (Starlette's TestClient, the official `openai` SDK) in
front of the MetaVoice runner (tiny official-format checkpoints) under the real Cog server: one
voice under every OpenAI name, 24 kHz audio, one speed only."""

from __future__ import annotations

import io

import av
import openai
import pytest
from starlette.testclient import TestClient

from saladcog.door.app import create_app
from saladcog.serve import CogServer
from tests import metavoice_tiny as tiny


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    weights = tiny.write_all(tmp_path_factory.mktemp("metavoice-weights"))
    env = weights.server_env()
    with CogServer("metavoice", env=env) as server:
        server.wait_ready(timeout=180)
        app = create_app(server.url("127.0.0.1"), model="metavoice")
        with TestClient(app, base_url="http://door") as http:
            yield openai.OpenAI(base_url="http://door/v1", api_key="unused", http_client=http)


def test_speech_from_an_openai_voice(client):
    assert [m.id for m in client.models.list().data] == ["metavoice", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"]
    text = "The family of Dashwood had long been settled in Sussex."
    default = client.audio.speech.create(model="metavoice", voice="default", input=text, response_format="flac",
                                         extra_body={"seed": 5}).content
    shimmer = client.audio.speech.create(model="tts-1", voice="shimmer", input=text, response_format="flac",
                                         extra_body={"seed": 5}).content
    assert default == shimmer  # one voice, whatever OpenAI name it is asked by
    with av.open(io.BytesIO(default)) as container:
        stream = container.streams.audio[0]
        samples = sum(frame.samples for frame in container.decode(stream))
        assert stream.codec_context.sample_rate == 24000 and samples > 2400


@pytest.mark.parametrize("kwargs, message", [
    (dict(speed=1.5), "speed must be 1.0"),
    (dict(voice="EN-US"), "voice 'EN-US' is not available"),
])
def test_what_metavoice_cannot_do(client, kwargs, message):
    with pytest.raises(openai.BadRequestError) as error:
        client.audio.speech.create(**(dict(model="tts-1", voice="alloy", input="Hello there.") | kwargs))
    assert message in error.value.body["message"]
