"""The length of a file is what it decodes to. Timestamps a file writes itself may lie (an Ogg
whose granule positions stop at 10 s, an MKV whose timestamps cover a sixth of its audio): the
cap counts decoded samples. A length FFmpeg estimated from the bit rate (VBR MP3 without a Xing
header, raw ADTS AAC) is no declared length: it may refuse nothing."""

from __future__ import annotations

import struct

import av
import jiwer
import numpy as np
import pytest

from conftest import normalize
from saladcog import audio
from saladcog.asr.transcribe import transcribe

SR = 16000
CAP = "20"  # SALADCOG_MAX_AUDIO_SECONDS for these tests


def write(path, fmt: str, codec: str, samples: np.ndarray, *, rate: int = SR, options=None,
          timestamp_scale: float = 1.0, configure=lambda stream: None):
    """Encode mono float samples with PyAV, one second a frame; `timestamp_scale` multiplies
    every packet's timestamps as they are written (a muxer that lies about time)."""
    with av.open(str(path), "w", format=fmt, options=options or {}) as container:
        stream = container.add_stream(codec, rate=rate, layout="mono")
        configure(stream)

        def mux(packets):
            for packet in packets:
                if timestamp_scale != 1.0:
                    packet.pts = int(packet.pts * timestamp_scale)
                    packet.dts = int(packet.dts * timestamp_scale)
                container.mux(packet)

        pcm = np.round(np.clip(samples, -1, 1) * 32767).astype(np.int16)
        for start in range(0, len(pcm), SR):
            piece = pcm[start : start + SR].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(piece, format="s16", layout="mono")
            frame.sample_rate, frame.pts = SR, start
            mux(stream.encode(frame))
        mux(stream.encode(None))
    return path


def _ogg_crc(page: bytes) -> int:
    """Ogg's page checksum: CRC-32, polynomial 0x04C11DB7, not reflected, initial value 0."""
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
    return crc


def stop_granules(path, last: int) -> None:
    """Rewrite an Ogg file so that no page's granule position passes `last` (checksums redone)."""
    data = bytearray(path.read_bytes())
    at = 0
    while at < len(data):
        assert data[at : at + 4] == b"OggS", at
        segments = data[at + 27 : at + 27 + data[at + 26]]
        size = 27 + len(segments) + sum(segments)
        granule = struct.unpack_from("<q", data, at + 6)[0]
        struct.pack_into("<q", data, at + 6, min(granule, last))
        struct.pack_into("<I", data, at + 22, 0)  # the checksum is computed over a zero field
        struct.pack_into("<I", data, at + 22, _ogg_crc(bytes(data[at : at + size])))
        at += size
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def late_speech(clips) -> np.ndarray:
    """60 s: silence, and a LibriVox clip at 50 s."""
    samples = np.zeros(60 * SR, dtype=np.float32)
    speech = clips[1].samples
    samples[50 * SR : 50 * SR + len(speech)] = speech
    return samples


def lying_ogg(path, samples):
    write(path, "ogg", "libopus", samples, rate=48000)
    stop_granules(path, 10 * 48000)
    return path


def lying_mkv(path, samples):
    return write(path, "matroska", "pcm_s16le", samples, timestamp_scale=0.16)


@pytest.mark.parametrize("make", [lying_ogg, lying_mkv], ids=["ogg", "mkv"])
def test_timestamps_that_lie_do_not_pass_the_cap(tiny_en, late_speech, tmp_path, monkeypatch, make):
    path = make(tmp_path / f"sixty.{make.__name__[-3:]}", late_speech)
    assert audio.probe(path).duration < 11  # what the file says of itself
    monkeypatch.setenv("SALADCOG_MAX_AUDIO_SECONDS", CAP)
    with pytest.raises(audio.AudioError) as refused:
        transcribe(tiny_en, path, name="the uploaded audio")
    assert str(refused.value) == (
        "the uploaded audio is too long: more than 0:00:20 of audio; this server accepts at "
        "most 0:00:20 (h:mm:ss, SALADCOG_MAX_AUDIO_SECONDS)"
    )
    # Nothing past the cap is decoded into a block.
    with pytest.raises(audio.AudioError):
        for block in audio.stream(path, SR, block_seconds=1.0, max_seconds=20):
            assert not block.any()  # the speech at 50 s is never reached


@pytest.fixture(scope="module")
def fifteen_seconds(clips) -> tuple[np.ndarray, str]:
    """1 s of silence, two LibriVox clips 0.5 s apart, 0.6 s of silence: 15 s."""
    silence = [np.zeros(round(s * SR), dtype=np.float32) for s in (1.0, 0.5, 0.6)]
    speech = [clips[0].samples, clips[2].samples]
    samples = np.concatenate([silence[0], speech[0], silence[1], speech[1], silence[2]])
    return samples, normalize(f"{clips[0].text} {clips[2].text}")


def vbr_mp3_without_xing(path, samples):
    def variable_bit_rate(stream):
        stream.codec_context.qscale = 4
        stream.codec_context.flags |= av.codec.context.Flags.qscale

    return write(path, "mp3", "libmp3lame", samples, options={"write_xing": "0"},
                 configure=variable_bit_rate)


def adts_aac(path, samples):
    return write(path, "adts", "aac", samples)


@pytest.mark.parametrize("make", [vbr_mp3_without_xing, adts_aac], ids=["mp3", "aac"])
def test_a_bit_rate_estimate_refuses_nothing(tiny_en, fifteen_seconds, tmp_path, monkeypatch, make):
    samples, reference = fifteen_seconds
    path = make(tmp_path / f"fifteen.{make.__name__[-3:]}", samples)
    with av.open(str(path)) as container:
        estimate = container.duration / av.time_base
    assert estimate > len(samples) / SR + 2  # FFmpeg's guess is well off: the file starts silent
    monkeypatch.setenv("SALADCOG_MAX_AUDIO_SECONDS", CAP)  # and below the guess for the MP3
    result = transcribe(tiny_en, path, name="the uploaded audio")
    assert result.detected.duration == pytest.approx(len(samples) / SR, abs=0.2)
    heard = normalize(result.text)
    assert jiwer.wer(reference, heard) <= 0.15, heard
