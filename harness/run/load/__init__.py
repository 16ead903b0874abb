"""What a worker runs: the load loops (open, closed, one-user blocking) and the pipeline."""
