"""pets applications that measure: the benchmark engine and the privacy assessment.

The folder is ``benchmarks/``; the import name is ``pets_benchmarks`` (CrypTen and
Opacus both install a top-level package called ``benchmarks``). The library
(``pets/``) never imports this package; ``pets bench`` and ``pets assess`` dispatch to it.
"""
