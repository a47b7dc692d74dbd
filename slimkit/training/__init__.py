"""Training: the loop, its loss, moving averages, optimizers and schedules."""
