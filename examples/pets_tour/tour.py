"""``pets demo``: a tour of every technique, each with its cost measured.

1. encrypted inference in one process: what client and server each do;
2. the same between two processes over HTTP (``pets serve`` / ``pets infer``);
3. MPC: three party processes train one model jointly, then one queries it privately;
4. differential privacy: calibrated noise, an enforced budget, noisy release
   of an encrypted result;
5. DP-SGD against non-private training, and a membership-inference audit;
6. what HE costs against plaintext and TenSEAL's own recipe.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable

__all__ = ["run_tour"]

Say = Callable[[str], None]


def _heading(title: str) -> None:
    print(f"\n{'=' * 78}\n{title}\n{'=' * 78}", flush=True)


def encrypted_inference(quick: bool, say: Say) -> None:
    import numpy as np
    import torch

    import pets
    from pets.bench.workloads import accuracy, digits, train_digits_mlp

    _heading("1. Encrypted inference: a client encrypts, a server computes without the key")
    data = digits()
    say("training a 64-32-10 MLP with a square activation on scikit-learn's digits")
    net = train_digits_mlp(epochs=20 if quick else 60)
    client = pets.backend("ckks")
    model = pets.compile(net, backend=client, example_input=data.x_train)
    print(model)
    print("CKKS parameters:", json.dumps(client.describe()))
    public = client.public().to_bytes()
    server = pets.load_backend(public)
    server_model = model.for_backend(server)
    say(f"the server holds a public key set of {len(public) / 2**20:.1f} MiB (no secret key)")
    samples = data.x_test[:128] if quick else data.x_test
    with pets.measure("client encrypt") as enc:
        request = model.encrypt(samples, layout="batched").to_bytes()
    with pets.measure("server inference") as inf:
        response = server_model(server.load_tensor(request)).to_bytes()
    with pets.measure("client decrypt") as dec:
        logits = model.decrypt(client.load_tensor(response))
    plain = net(torch.tensor(samples, dtype=torch.float32)).detach().numpy()
    for m in (enc, inf, dec):
        print(" ", m)
    print(f"  accuracy on {len(samples)} test digits: plaintext "
          f"{accuracy(plain, data.y_test[: len(samples)]):.4f}, encrypted "
          f"{accuracy(logits, data.y_test[: len(samples)]):.4f}; max |logit difference| "
          f"{float(np.abs(logits - plain).max()):.2e}")
    one = model.encrypt(data.x_test[:1], layout="per_sample")
    with pets.measure("per-sample latency, first digit (encodes the layers' plaintexts)") as cold:
        model(one)
    print(" ", cold)
    with pets.measure("per-sample latency, next digit") as lat:
        model(model.encrypt(data.x_test[1:2], layout="per_sample"))
    print(" ", lat)


def service(quick: bool, say: Say) -> None:
    import pets
    from pets.bench.workloads import digits
    from protocols.service import InferenceClient

    _heading("2. The same as a service: two processes over HTTP (pets serve / pets infer)")
    command = [sys.executable, "-m", "pets", "serve", "digits", "--port", "0", "--workers", "1"]
    server = subprocess.Popen(command + (["--quick"] if quick else []),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert server.stdout is not None
        url = None
        for line in server.stdout:
            print("  server |", line.rstrip())
            found = re.search(r"serving encrypted inference on (http://[\d.]+:\d+)", line)
            if found:
                url = found.group(1)
                break
        if url is None:
            raise pets.PartyError(f"the server exited ({server.wait()}) before listening")
        data = digits()
        with pets.measure("client session") as cost, InferenceClient(url) as c:
            logits = c.infer(data.x_test[:256])
        accuracy = float((logits.argmax(1) == data.y_test[:256]).mean())
        print(f"  client: {cost}")
        print(f"  client traffic: {c.traffic}")
        print(f"  accuracy on 256 encrypted test digits: {accuracy:.4f}")
    finally:
        server.terminate()  # a graceful stop: sessions closed, their keys deleted
        try:
            rest = server.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:
            server.kill()
            rest = server.communicate()[0]
        for line in (rest or "").splitlines():
            print("  server |", line)


def multi_party(quick: bool, say: Say) -> None:
    from protocols.joint_training import run

    _heading("3. Secure multi-party computation: three organisations train one model, then "
             "one queries it privately")
    say("starting 3 party processes and a dealer (CrypTen secret shares, TTP triples); each "
        "party holds a third of the breast-cancer rows and sees none of the others'")
    print(run(parties=3))
    print("  no party saw another's rows, the labels, the weights or the gradients: only "
          "shares; the dealer saw only random triples")


def differential_privacy(quick: bool, say: Say) -> None:
    import numpy as np

    import pets

    _heading("4. Differential privacy: calibrated noise, an enforced budget")
    say("input perturbation (local DP): each of 5000 people flips their own bit before sending it")
    truth = np.random.default_rng(0).random(5000) < 0.3
    reported = pets.dp.randomized_response(truth, epsilon=1.0)
    keep = pets.dp.RandomizedResponse(1.0).keep_probability
    estimate = (reported.mean() - (1 - keep)) / (2 * keep - 1)
    print(f"  true share {truth.mean():.3f}; reports say {reported.mean():.3f}; debiased "
          f"estimate {estimate:.3f} (each person protected at epsilon=1 without a trusted curator)")
    say("output perturbation: noise on released statistics, charged to a budget")
    budget = pets.dp.Budget(epsilon=1.0, delta=1e-5)
    counts = np.array([120.0, 45.0, 3.0])
    noisy = pets.dp.laplace(counts, epsilon=0.5, sensitivity=1.0, budget=budget)
    print(f"  counts {counts.tolist()} released as {np.round(noisy, 2).tolist()} "
          f"(Laplace, epsilon=0.5); spent {budget.spent}, remaining {budget.remaining}")
    try:
        pets.dp.laplace(counts, epsilon=0.75, sensitivity=1.0, budget=budget)
    except pets.BudgetExceededError as exc:
        print(f"  a further spend of epsilon=0.75 is refused:\n    {exc}")
    say("output perturbation of an encrypted result: the key holder adds noise, then decrypts")
    be = pets.backend("ckks", depth=1)
    encrypted_total = be.encrypt(counts).sum()
    released = pets.dp.release(encrypted_total, budget=budget,
                               mechanism=pets.dp.LaplaceMechanism(epsilon=0.4, sensitivity=1.0))
    print(f"  encrypted total {counts.sum()} released as {np.round(released, 2).tolist()}; "
          f"spent {budget.spent}")


def dp_training(quick: bool, say: Say) -> None:
    from pets.bench.audit import run_audit
    from pets.bench.dp import run_dp

    _heading("5. DP-SGD (Opacus) against non-private training, and a membership audit")
    print(run_dp(epsilons=(1.0, 8.0) if quick else (0.5, 1.0, 2.0, 4.0, 8.0), quick=quick,
                 progress=say))
    print()
    print(run_audit(epsilon=2.0, shadows=2 if quick else 4, progress=say))


def overhead(quick: bool, say: Say) -> None:
    from pets.bench.he import run_he

    _heading("6. What HE costs: the digits MLP against plaintext and TenSEAL's recipe")
    samples = 2 if quick else 4
    print(run_he(batch=4096, latency_samples=samples, recipe_samples=samples, progress=say))


def run_tour(*, quick: bool = False, skip_bench: bool = False, say: Say = print) -> None:
    start = time.perf_counter()
    encrypted_inference(quick, say)
    service(quick, say)
    multi_party(quick, say)
    differential_privacy(quick, say)
    dp_training(quick, say)
    if not skip_bench:
        overhead(quick, say)
    say(f"tour finished in {time.perf_counter() - start:.0f} s")
