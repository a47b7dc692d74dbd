"""Training: the loop, its loss and moving averages, optimizers and schedules."""
