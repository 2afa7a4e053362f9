"""tinyclf: a tiny attention-based sequence classifier (ml-audit's sample project)."""

from tinyclf.model import TinyClassifier, build_model

__all__ = ["TinyClassifier", "build_model"]
__version__ = "0.3.1"
