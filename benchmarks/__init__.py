"""Benchmarks (``make bench``): synth cost against the CDK floor, the engine against the seed."""
