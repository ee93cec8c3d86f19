"""A tiny random Parakeet TDT in exactly the layout of onnx-asr's exports of the NeMo checkpoints
(`istupakov/parakeet-tdt-0.6b-v2-onnx`): config.json, vocab.txt (1024 SentencePiece pieces and
<blk>), encoder-model.onnx with its weights in encoder-model.onnx.data, decoder_joint-model.onnx,
with the real exports' input and output names, dtypes and the shapes that are not the model's
size (128 mel features in, 1024-wide encoder frames at 8x subsampling, a 2-layer 640-wide LSTM
prediction network, a joint that gives 1024 + 1 token logits and 5 duration logits).

The encoder is three strided convolutions (the lengths the FastConformer's subsampling gives)
masked to each input's length, so an utterance encodes the same alone or padded in a batch.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

VOCAB_SIZE = 1024  # parakeet-tdt-0.6b-v2's SentencePiece vocabulary; <blk> is id 1024
DURATIONS = (0, 1, 2, 3, 4)
FEATURES = 128
ENCODER_DIM = 1024
PRED_DIM = 640
PRED_LAYERS = 2
# Chosen so that random weights give a mix of blanks and tokens, and words that end sentences.
BLANK_BIAS = 3.0
PUNCTUATION_BIAS = 1.8
ENCODER_GAIN = 40.0
OUTPUT_GAIN = 1.5
ZERO_DURATION_BIAS = -4.0


def vocabulary() -> list[str]:
    """1024 distinct pieces in SentencePiece's form: word starts with ▁, continuations, punctuation."""
    pieces = ["<unk>", ".", ",", "?", "'"]
    consonants, vowels = "bcdfghjklmnprstvwz", "aeiou"
    for first, vowel, last in itertools.product(consonants, vowels, ["", *consonants]):
        syllable = first + vowel + last
        pieces += ["\u2581" + syllable, syllable]
        if len(pieces) >= VOCAB_SIZE:
            return pieces[:VOCAB_SIZE]
    raise AssertionError("not enough pieces")


def make_tiny_parakeet(directory: Path, seed: int = 0) -> Path:
    """Write the model into `directory` (its name must be the real model's, as in the image)."""
    import onnx
    import torch
    from torch import nn

    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList([
                nn.Conv1d(FEATURES, 64, 3, stride=2, padding=1),
                nn.Conv1d(64, 64, 3, stride=2, padding=1),
                nn.Conv1d(64, ENCODER_DIM, 3, stride=2, padding=1),
            ])

        def forward(self, audio_signal, length):
            x, lengths = audio_signal, length
            for i, conv in enumerate(self.convs):
                x = conv(x)
                lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1
                mask = torch.arange(x.shape[-1], device=x.device)[None, :] < lengths[:, None]
                x = (torch.tanh(x) if i == len(self.convs) - 1 else torch.relu(x)) * mask[:, None, :]
            return x, lengths

    class DecoderJoint(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(VOCAB_SIZE + 1, PRED_DIM, padding_idx=VOCAB_SIZE)
            self.lstm = nn.LSTM(PRED_DIM, PRED_DIM, PRED_LAYERS)
            self.enc = nn.Linear(ENCODER_DIM, PRED_DIM)
            self.pred = nn.Linear(PRED_DIM, PRED_DIM)
            self.out = nn.Linear(PRED_DIM, VOCAB_SIZE + 1 + len(DURATIONS))
            with torch.no_grad():
                # Encoder frames, not the prediction network, decide most of each step.
                self.enc.weight.mul_(ENCODER_GAIN)
                self.out.weight.mul_(OUTPUT_GAIN)
                self.out.bias[VOCAB_SIZE] += BLANK_BIAS
                for piece in (1, 3):  # "." and "?" are likely enough to end sentences
                    self.out.bias[piece] += PUNCTUATION_BIAS
                # Mostly durations of 1 frame or more: a random prediction network would
                # otherwise repeat its token up to the per-frame limit.
                self.out.bias[VOCAB_SIZE + 1] += ZERO_DURATION_BIAS

        def forward(self, encoder_outputs, targets, target_length, input_states_1, input_states_2):
            embedded = self.embedding(targets.long()).transpose(0, 1)  # [U, B, H]
            pred, (h, c) = self.lstm(embedded, (input_states_1, input_states_2))
            enc = self.enc(encoder_outputs.transpose(1, 2))  # [B, T, H]
            joint = enc[:, :, None, :] + self.pred(pred.transpose(0, 1))[:, None, :, :]
            return self.out(torch.relu(joint)), target_length, h, c

    encoder, decoder_joint = Encoder().eval(), DecoderJoint().eval()
    batch = "batch"
    encoder_file = directory / "encoder-model.onnx"
    torch.onnx.export(
        encoder,
        (torch.zeros(1, FEATURES, 100), torch.tensor([100], dtype=torch.int64)),
        str(encoder_file),
        dynamo=False,
        input_names=["audio_signal", "length"],
        output_names=["outputs", "encoded_lengths"],
        dynamic_axes={"audio_signal": {0: batch, 2: "time"}, "length": {0: batch},
                      "outputs": {0: batch, 2: "frames"}, "encoded_lengths": {0: batch}},
    )
    # The real encoder is over the 2 GB protobuf limit: its weights live in a .data file beside it.
    model = onnx.load(str(encoder_file))
    onnx.save_model(model, str(encoder_file), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="encoder-model.onnx.data", size_threshold=0)
    states = torch.zeros(PRED_LAYERS, 1, PRED_DIM)
    torch.onnx.export(
        decoder_joint,
        (torch.zeros(1, ENCODER_DIM, 1), torch.zeros(1, 1, dtype=torch.int32), torch.ones(1, dtype=torch.int32),
         states, states),
        str(directory / "decoder_joint-model.onnx"),
        dynamo=False,
        input_names=["encoder_outputs", "targets", "target_length", "input_states_1", "input_states_2"],
        output_names=["outputs", "prednet_lengths", "output_states_1", "output_states_2"],
        dynamic_axes={"encoder_outputs": {0: batch, 2: "frames"}, "targets": {0: batch, 1: "tokens"},
                      "target_length": {0: batch}, "input_states_1": {1: batch}, "input_states_2": {1: batch},
                      "outputs": {0: batch, 1: "frames", 2: "tokens"}, "prednet_lengths": {0: batch},
                      "output_states_1": {1: batch}, "output_states_2": {1: batch}},
    )
    pieces = [*vocabulary(), "<blk>"]
    (directory / "vocab.txt").write_text("".join(f"{piece} {i}\n" for i, piece in enumerate(pieces)), encoding="utf-8")
    config = {"model_type": "nemo-conformer-tdt", "features_size": FEATURES, "subsampling_factor": 8}
    (directory / "config.json").write_text(json.dumps(config))
    return directory
