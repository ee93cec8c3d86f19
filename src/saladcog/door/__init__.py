"""saladcog's front door: OpenAI's audio API (transcriptions, translations, speech, models) in
front of a Cog runner, and Cog's own API passed through, on one port.

`python -m saladcog.door --port 5000 --upstream http://127.0.0.1:5001` serves it on [::]:5000
(dual stack). ipv6_entrypoint.sh starts it in COG_IPV6_MODE=openai. See docs/openai.md.
"""
