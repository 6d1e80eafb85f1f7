"""The scheduler: jobs, one supervisor per container, logs, events, pre-flight, bench."""
