"""locedit: causal tracing vs knowledge editing (Hase et al., NeurIPS 2023), rebuilt."""
__version__ = "0.1.0"
