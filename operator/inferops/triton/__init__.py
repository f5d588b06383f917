"""Triton: config.pbtxt building and checking, local serving, load generation, batching tuner, probes."""
