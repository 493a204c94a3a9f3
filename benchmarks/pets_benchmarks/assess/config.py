"""How big an assessment run is: the quick run, the full run, and a tiny one for tests.

Every size is a field, so a run is reproducible from its JSON (the configuration is
written into it). ``PETS_ASSESS_SIZE=tiny`` makes ``pets assess --quick`` run the tiny
configuration (the test hook; a few seconds of attacks, no MPC processes).

>>> quick().epsilons, tiny().mpc
((8.0, 1.0), False)
>>> from_environment(quick(), {"PETS_ASSESS_SIZE": "tiny"}).name
'tiny'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from pets.errors import ParameterError

__all__ = ["AssessConfig", "dp_column", "from_environment", "full", "quick", "tiny"]



@dataclass(frozen=True)
class AssessConfig:
    """The sizes of one run (see :func:`quick` and :func:`full` for the two presets)."""

    name: str
    epsilons: tuple[float, ...] = (8.0, 1.0)
    delta: float = 1e-5
    seed: int = 0
    # data: digits split into members / non-members / test / the attacker's own rows
    members: int = 300
    test: int = 300
    attacker: int = 400
    hidden: int = 32
    # training: plaintext ("none") and DP-SGD (Opacus through pets.dp.make_private)
    plain_epochs: int = 100
    dp_epochs: int = 15
    dp_batch: int = 64
    dp_lr: float = 1.0
    dp_accountant: str = "rdp"
    clip_norm: float = 1.0
    # collection: how many records the collector gathers (None: every record not held out)
    collected: int | None = None
    # attacks
    membership_attacks: tuple[str, ...] = ("loss", "rmia")
    shadows: int = 2
    # property inference: 25 targets of each kind (50 guesses) keep the 95% interval of
    # the meta-classifier's accuracy within +-0.15; quick runs it without protection only
    property_shadows: int = 8
    property_targets: int = 25
    property_size: int = 150
    property_dp: bool = False
    inversion_steps: int = 100
    inversion_per_class: int = 2
    blackbox_steps: int = 30
    blackbox_directions: int = 5
    reconstructions: int = 20
    # the protected runs
    he: bool = True
    he_queries: int = 200
    mpc: bool = True
    mpc_epochs: int = 2
    mpc_lr: float = 0.5
    mpc_batch: int = 16
    mpc_queries: int = 100
    federated: bool = True
    fl_clients: int = 3
    fl_rounds: int = 3
    fl_epsilon: float = 8.0
    fl_local_epochs: int = 2
    fl_lr: float = 0.1
    flower: bool = False

    def __post_init__(self) -> None:
        if not self.epsilons or any(not (e > 0) for e in self.epsilons):
            raise ParameterError(
                f"epsilons must be positive numbers, got {self.epsilons!r}; pass e.g. (8.0, 1.0)"
            )
        if self.members < 20 or self.test < 10 or self.attacker < 50:
            raise ParameterError(
                "an assessment needs at least 20 members, 10 test rows and 50 attacker rows; "
                f"got {self.members}, {self.test}, {self.attacker}"
            )
        if 2 * self.members + self.test + self.attacker > 1797:
            raise ParameterError(
                f"members ({self.members}) twice, test ({self.test}) and attacker "
                f"({self.attacker}) rows exceed the 1,797 digits; make them smaller"
            )

    @property
    def techniques(self) -> list[str]:
        """The matrix's columns, in order: none, one DP column per epsilon, HE, MPC, FL."""
        return ["none", *(dp_column(e) for e in self.epsilons), "HE (CKKS)", "MPC (2 parties)",
                "FL + DP + HE"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dp_column(epsilon: float) -> str:
    """The name of the DP column at ``epsilon``: ``DP eps=8``."""
    return f"DP eps={epsilon:g}"


def quick() -> AssessConfig:
    """About 4 minutes on 2 idle cores: 300 members, 2 shadow models, 2 epsilons, 3 FL
    rounds; property inference on the unprotected model only (66 models)."""
    return AssessConfig(name="quick")


def full() -> AssessConfig:
    """The full run: more epsilons, shadows, property models and rounds (tens of minutes)."""
    return AssessConfig(
        name="full", epsilons=(8.0, 4.0, 1.0, 0.5), members=400, attacker=400, test=300,
        plain_epochs=150, dp_epochs=20, membership_attacks=("loss", "lira", "rmia"),
        shadows=4, property_shadows=8, property_targets=25, property_size=200, property_dp=True,
        inversion_steps=200, inversion_per_class=5, blackbox_steps=60,
        blackbox_directions=10, reconstructions=50, mpc_epochs=3, mpc_queries=300,
        fl_rounds=5, flower=True,
    )


def tiny() -> AssessConfig:
    """For tests: every stage and every cell kind in seconds (no MPC processes, no Flower,
    no DP-SGD shadow models: each is one more DP-SGD run).

    Its epsilons are far apart (32 and 1) so that the DP cells' order is beyond chance.
    """
    return AssessConfig(
        name="tiny", epsilons=(32.0, 1.0), members=100, test=100, attacker=300,
        plain_epochs=30, dp_epochs=3, membership_attacks=("loss",), shadows=0,
        property_shadows=2, property_targets=1, property_size=80, inversion_steps=20,
        inversion_per_class=1, blackbox_steps=3, blackbox_directions=2, reconstructions=8,
        collected=600, property_dp=False, he_queries=20, mpc=False, fl_rounds=1,
        fl_local_epochs=1,
    )


PRESETS = {"quick": quick, "full": full, "tiny": tiny}


def from_environment(config: AssessConfig, environ: Mapping[str, str]) -> AssessConfig:
    """``config``, or the preset ``PETS_ASSESS_SIZE`` names (the test hook), with
    ``PETS_ASSESS_MPC=0`` turning the MPC run off."""
    size = environ.get("PETS_ASSESS_SIZE", "").strip().lower()
    if size:
        if size not in PRESETS:
            raise ParameterError(
                f"PETS_ASSESS_SIZE={size!r} is not a preset; use one of {', '.join(PRESETS)}"
            )
        config = PRESETS[size]()
    if environ.get("PETS_ASSESS_MPC", "").strip() == "0":
        config = replace(config, mpc=False)
    return config
