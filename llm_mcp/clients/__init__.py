"""Everything that talks to the daemon: socket client, CLI, MCP server, check."""
