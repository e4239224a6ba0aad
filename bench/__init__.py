"""Benchmarks: bounded, loopback only; ``python -m bench`` runs them all."""
