"""pixeltrack: the command line and the wiring of edge, processors and store."""

__version__ = "0.1.0"
