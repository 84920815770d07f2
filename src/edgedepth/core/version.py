"""The package's version, read from its installed metadata: ``pyproject.toml`` is its one owner."""

from importlib import metadata

try:
    __version__ = metadata.version("edgedepth")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
