"""``pets bench``: every technique on the same work, in one run, against plaintext.

Workloads (rows): dot products and matmuls at several sizes, logistic regression,
the digits MLP and a small CNN (inference), and training the digits MLP.
Techniques (columns): plaintext, DP, CKKS per-sample and batched, MPC with 2 and 3
parties, federated. Each cell holds the wall time (median, min, max) and
throughput, peak memory, bytes on the wire (ciphertexts and keys; bytes and rounds
per party), accuracy against plaintext, the privacy parameter, and the overhead
against the plaintext cell of the same run; cells that cannot run say why.

>>> from pets_benchmarks.matrix import MatrixConfig, run_matrix, write_files
>>> result = run_matrix(MatrixConfig.tiny())          # doctest: +SKIP
>>> write_files(result, "out/bench")                  # doctest: +SKIP

Modules: :mod:`.config` (presets), :mod:`.workloads`, :mod:`.techniques` (one module
per column, registered), :mod:`.runner`, :mod:`.cells` and :mod:`.timing`,
:mod:`.tables`, :mod:`.writers`, :mod:`.plots`, :mod:`.machine`, :mod:`.report`.
"""

from __future__ import annotations

from pets_benchmarks.matrix.cells import COLUMNS, Cell
from pets_benchmarks.matrix.config import MatrixConfig
from pets_benchmarks.matrix.report import FILES, bench, print_matrix, write_files
from pets_benchmarks.matrix.runner import MatrixResult, run_matrix

__all__ = ["COLUMNS", "FILES", "Cell", "MatrixConfig", "MatrixResult", "bench", "print_matrix",
           "run_matrix", "write_files"]
