"""msgzoo: a TorchRL-style algorithm zoo for Markov signaling games."""
__version__ = "0.1.0"
