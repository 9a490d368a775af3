"""Emergency vehicle alert broker: AVL positions in, warning zones out to partners."""

__version__ = "0.1.0"
