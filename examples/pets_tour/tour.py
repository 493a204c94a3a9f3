"""``pets demo``: a tour of every technique, each with what it keeps private and what it costs.

1. HE: a client encrypts, a server computes without the key (in one process);
2. the same as two processes over HTTP (``pets serve`` / ``pets infer``);
3. MPC: three party processes train one model jointly, then one queries it privately;
4. federated learning on Flower: DP noise and encrypted aggregation, a dropout;
5. DP: calibrated noise, an enforced budget, noisy release of an encrypted result;
6. DP-SGD against non-private training, and a membership-inference audit;
7. the attacks each technique stops: a training update read back, or not;
8. what HE costs against plaintext and TenSEAL's own recipe (``--skip-bench`` leaves it out).

Each step says before it starts what it is, how long it usually takes on two
idle cores (the whole tour: about 70 s), and who is kept from seeing what.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from pets_tour.attacks import attacks
from pets_tour.common import Say
from pets_tour.dp import differential_privacy, dp_training
from pets_tour.federated import federated
from pets_tour.he import encrypted_inference, overhead, service
from pets_tour.mpc import multi_party

__all__ = ["SECTIONS", "Section", "run_tour"]


@dataclass(frozen=True)
class Section:
    """One step of the tour: what runs, roughly how long (quick, full), what stays private."""

    name: str
    run: Callable[[bool, Say], None]
    seconds: tuple[int, int]
    private: str
    bench: bool = False


SECTIONS = (
    Section("HE inference", encrypted_inference, (4, 8),
            "the server never sees the inputs or the outputs; the client never sees the weights"),
    Section("HE service over HTTP", service, (8, 12),
            "the server process holds public keys and ciphertexts only"),
    Section("MPC joint training", multi_party, (18, 25),
            "no party sees another's rows, the labels, the weights or the gradients"),
    Section("federated learning", federated, (15, 25),
            "clients keep their data; the aggregator sees ciphertexts; DP bounds what the "
            "average says about a client"),
    Section("differential privacy", differential_privacy, (1, 2),
            "each released number is noised and charged to a budget"),
    Section("DP-SGD and its audit", dp_training, (4, 10),
            "the trained model's leakage about any one training record is bounded by epsilon"),
    Section("attacks", attacks, (2, 3),
            "what an update gives away in the clear, under DP noise, and under encryption"),
    Section("HE overhead", overhead, (10, 15), "(measurement only)", bench=True),
)


def run_tour(*, quick: bool = False, skip_bench: bool = False, say: Say = print) -> None:
    """Run every section in turn, announcing each with its estimate and its privacy promise."""
    chosen = [s for s in SECTIONS if not (s.bench and skip_bench)]
    estimate = sum(s.seconds[0 if quick else 1] for s in chosen)
    say(f"the tour: {len(chosen)} steps, about {estimate // 60} min {estimate % 60} s on two "
        "cores")
    start = time.perf_counter()
    for number, section in enumerate(chosen, 1):
        elapsed = time.perf_counter() - start
        say(f"[{number}/{len(chosen)}] {section.name}: about "
            f"{section.seconds[0 if quick else 1]} s (elapsed {elapsed:.0f} s). "
            f"Private: {section.private}")
        section.run(quick, say)
    say(f"tour finished in {time.perf_counter() - start:.0f} s")
