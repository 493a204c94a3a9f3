"""``pets assess``: the privacy assessment matrix, measured rather than guessed.

Rows are the stages of an ML workflow and their threats (collection: an eavesdropping
server; training: reconstruction from updates; inference: an eavesdropping server and
model inversion through the API; release: membership, model inversion, property
inference). Columns are the techniques: none, DP at several epsilons, HE (CKKS), MPC
(two party processes), and federated learning with DP and encrypted aggregation. Each
cell holds the attack's measured success (or, where the attacker's view holds only
ciphertexts or random shares, "impossible" with what it held) beside the technique's
measured cost in time, bytes and accuracy against plaintext on the same work.

>>> from pets_benchmarks.assess import quick, tiny
>>> quick().techniques
['none', 'DP eps=8', 'DP eps=1', 'HE (CKKS)', 'MPC (2 parties)', 'FL + DP + HE']
>>> tiny().mpc
False

``run_assessment(config)`` fills the matrix; ``write_reports(matrix, folder)`` writes
``assessment.md``, ``assessment.json`` and ``assessment.png``; ``docs/assess.md``
says how to read them.
"""

from pets_benchmarks.assess.cells import Cell, Cost, Leakage
from pets_benchmarks.assess.config import AssessConfig, from_environment, full, quick, tiny
from pets_benchmarks.assess.report import load_matrix, markdown, write_reports
from pets_benchmarks.assess.runner import STAGES, Matrix, run_assessment

__all__ = [
    "STAGES",
    "AssessConfig",
    "Cell",
    "Cost",
    "Leakage",
    "Matrix",
    "from_environment",
    "full",
    "load_matrix",
    "markdown",
    "quick",
    "run_assessment",
    "tiny",
    "write_reports",
]
