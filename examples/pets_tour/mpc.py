"""The tour's MPC section: three party processes train one model, then one queries it privately."""

from __future__ import annotations

from pets_tour.common import Say, heading


def multi_party(quick: bool, say: Say) -> None:
    from pets_protocols.joint_training import run

    heading("3. Secure multi-party computation: three organisations train one model, then "
             "one queries it privately")
    say("starting 3 party processes and a dealer (CrypTen secret shares, TTP triples); each "
        "party holds a third of the breast-cancer rows and sees none of the others'")
    print(run(parties=3))
    print("  no party saw another's rows, the labels, the weights or the gradients: only "
          "shares; the dealer saw only random triples")
