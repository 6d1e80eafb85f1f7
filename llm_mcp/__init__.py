"""llm-mcp: one-call model switching for llama.cpp's llama-server in Docker."""

__version__ = "0.1.0"
