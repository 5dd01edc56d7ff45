"""Job backends: one module per place a job can run. See `streams.jobs.registry`."""
