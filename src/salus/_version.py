"""The package version, in one place: ``pyproject.toml`` reads it (``tool.setuptools.dynamic``),
``salus.__version__`` re-exports it, and collection records it without importing the package root."""

__version__ = "0.1.0"
