"""End-to-end tests: the real pieces together, driven from outside (a browser, a client)."""
