"""ml-audit: mutation and flakiness audits for PyTorch projects tested with pytest."""

__version__ = "0.1.0"
