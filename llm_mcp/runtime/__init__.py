"""Where containers run: the runtime interface, Docker, and an in-memory stand-in."""
