"""pets applications that measure: the benchmark engine and the privacy assessment.

The library (``pets/``) never imports this package; ``pets bench`` and
``pets assess`` dispatch to it.
"""
