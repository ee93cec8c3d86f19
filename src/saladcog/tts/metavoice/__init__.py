"""MetaVoice-1B: a causal GPT over EnCodec codes, a non-causal second stage, a speaker encoder."""
