"""The package version, in one place (the run JSON records it)."""

__version__ = "0.1.0"
