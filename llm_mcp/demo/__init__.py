"""Demo helpers: tiny GGUF models that a real llama-server loads in milliseconds."""
