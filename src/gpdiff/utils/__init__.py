"""Infrastructure every stage may use: config trees, file IO, hashing, user errors, device, distributed, LR schedule."""
