"""The `instseg` command line: one group (base), its commands by job."""
from . import inspect, label, make, toy  # noqa: F401  (each registers its commands on `main`)
from .base import _terminate_as_interrupt, main  # noqa: F401

__all__ = ["main"]
