"""The columns of the matrix, in order: plaintext, DP (output noise, DP-SGD), CKKS (two
packings), MPC, federated.

Each module registers its technique(s) with :func:`~.base.register`; importing this
package imports them all.

>>> from pets_benchmarks.matrix.config import MatrixConfig
>>> [t.key for t in make_techniques(MatrixConfig.tiny())]
['plaintext', 'dp-output', 'dp-sgd', 'ckks-per-sample', 'ckks-batched', 'mpc-2', 'federated']
"""

from __future__ import annotations

from pets_benchmarks.matrix.config import MatrixConfig
from pets_benchmarks.matrix.techniques import ckks, dp, federated, mpc, plaintext
from pets_benchmarks.matrix.techniques.base import Context, Technique, registered

__all__ = ["ORDER", "Context", "Technique", "make_techniques"]

_ = (plaintext, dp, ckks, mpc, federated)  # imported for their registrations

#: column order: plaintext first (its outputs are every other cell's reference); families
#: registered elsewhere follow these
ORDER = ("plaintext", "dp", "ckks", "mpc", "federated")


def make_techniques(config: MatrixConfig) -> list[Technique]:
    """Every registered technique for ``config``, in column order."""
    factories = registered()
    order = [f for f in ORDER if f in factories] + [f for f in factories if f not in ORDER]
    techniques = []
    for family in order:
        for technique in factories[family](config):
            technique.family = family
            techniques.append(technique)
    return techniques

