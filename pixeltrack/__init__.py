"""pixeltrack: the command line (cli.py, commands/), the composition root (compose/), the sender's tools
(sender/), analytics (analytics/) and the dashboard (dashboard/)."""

__version__ = "0.1.0"
