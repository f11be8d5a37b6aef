"""Framework-agnostic necks."""

from .simple_pyramid import SimplePyramid

__all__ = ["SimplePyramid"]
