"""Training loops (single process, or one process per device under torchrun)."""
