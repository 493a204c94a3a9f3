"""pets applications that measure: the benchmark engine and the privacy assessment.

* ``pets bench`` (:mod:`pets_benchmarks.matrix`): every technique on the same
  workloads, each cell against the plaintext cell of the same run; the detailed
  comparisons (``he``: CKKS against TenSEAL's recipe and raw SEAL, ``dp``: DP-SGD
  against SGD, ``mpc``: MPC against CrypTen) are ``pets bench --only``;
* ``pets assess`` (:mod:`pets_benchmarks.assess`): the privacy assessment matrix;
* ``workloads``, ``baselines``, ``report``: shared data, models and tables.

The folder is ``benchmarks/`` (beside the pytest-benchmark suites); the import
name is ``pets_benchmarks`` (CrypTen and Opacus each install a top-level package
called ``benchmarks``). The library (``pets/``) never imports this package.
"""
