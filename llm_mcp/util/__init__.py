"""Small helpers every layer uses: private files, locks, terminal-safe text."""
