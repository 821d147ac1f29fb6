"""Training for qcanet's networks (PyTorch).  Entry point: ``qcanet-train``."""
