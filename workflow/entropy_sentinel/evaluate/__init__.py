"""Evaluation: the protocol, the composition sweep and studies."""
