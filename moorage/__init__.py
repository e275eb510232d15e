"""Moorage: self-hosted SageMaker-style model hosting."""

__version__ = "0.1.0"

__all__ = ["__version__"]
