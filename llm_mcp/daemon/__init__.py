"""The daemon process: socket server, method table, HTTP listeners."""
