"""OpenAI's audio API (transcriptions, translations, speech, models) in front of a Cog runner.

`python -m saladcog.openai_api --port 5000 --upstream http://127.0.0.1:5001` serves
/v1/audio/* on [::]:5000 (dual stack) and passes every other path (Cog's own API) through to the
Cog server unchanged. ipv6_entrypoint.sh starts it in COG_IPV6_MODE=openai. See docs/openai.md.
"""
