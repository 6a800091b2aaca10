"""Progress plugin: the endpoint ranks report their step to, and status.progress (step, total, rate, ETA)."""
