"""saladcog: speech models packaged with Cog for SaladCloud."""

__version__ = "0.1.0"
