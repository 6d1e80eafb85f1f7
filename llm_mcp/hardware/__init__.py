"""GPUs (NVML), the host (psutil), GGUF headers and the memory-fit estimate."""
