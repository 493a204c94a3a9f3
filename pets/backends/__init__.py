"""Backends: one small contract (:mod:`pets.backends.base`), one module per engine."""
