"""OpenVoice v2: MeloTTS English synthesis followed by tone-colour conversion."""
