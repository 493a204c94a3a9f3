"""When a measured attack cell may be read as a finding, and when it is inconclusive.

A measured cell is a finding only when its 95% interval is narrow enough to tell
values apart and its row shows that the attack works at all. It is *inconclusive*
(shown with its interval, never coloured as a finding) when

* its interval is wider than :data:`WIDEST` (0.3, i.e. more than +-0.15): too few
  trials to say more than "somewhere in here"; or
* its row is at chance: the attack's interval against the unprotected model
  ("none") holds chance, so a protection's low value there shows nothing.

>>> from pets_benchmarks.assess.cells import Cell, Leakage
>>> wide = Leakage("meta-classifier accuracy", 1.0, (0.54, 1.0), chance=0.5, advantage=1.0)
>>> inconclusive(Cell("release", "property", "DP eps=8", "measured", leakage=wide))
'95% interval [0.54, 1.00] wider than 0.3'
>>> none = Leakage("AUC", 0.51, (0.47, 0.55), chance=0.5, advantage=0.02)
>>> row = Cell("release", "membership", "none", "measured", leakage=none)
>>> inconclusive(row, baseline=row)
'the attack is at chance without protection (none: AUC 0.51 [0.47, 0.55])'
"""

from __future__ import annotations

from collections.abc import Sequence

from pets_benchmarks.assess.cells import Cell

__all__ = ["BASELINE", "WIDEST", "inconclusive", "row_baseline"]

#: the widest 95% interval a finding may have
WIDEST = 0.3
#: the column every row's attack is first measured against
BASELINE = "none"


def row_baseline(cells: Sequence[Cell], cell: Cell) -> Cell | None:
    """The unprotected ("none") cell of ``cell``'s row, if the run has one."""
    for other in cells:
        if (other.stage, other.threat, other.technique) == (cell.stage, cell.threat, BASELINE):
            return other
    return None


def inconclusive(cell: Cell, baseline: Cell | None = None) -> str | None:
    """Why ``cell`` is inconclusive, or ``None`` when it is a finding (or not measured)."""
    leak = cell.leakage
    if cell.status != "measured" or leak is None:
        return None
    if leak.interval is not None:
        low, high = leak.interval
        if high - low > WIDEST:
            return f"95% interval [{low:.2f}, {high:.2f}] wider than {WIDEST:g}"
    if baseline is not None and baseline.status == "measured" and baseline.leakage is not None:
        base = baseline.leakage
        if base.interval is not None and base.interval[0] <= base.chance <= base.interval[1]:
            return f"the attack is at chance without protection ({BASELINE}: {base.short()})"
    return None
