"""The tour's HE sections: encrypted inference in one process, the service, the cost."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from pets_tour.common import Say, heading


def encrypted_inference(quick: bool, say: Say) -> None:
    import numpy as np
    import torch
    from pets_benchmarks.workloads import accuracy, digits, train_digits_mlp

    import pets

    heading("1. Encrypted inference: a client encrypts, a server computes without the key")
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
    from pets_benchmarks.workloads import digits
    from pets_protocols.service import InferenceClient

    import pets

    heading("2. The same as a service: two processes over HTTP (pets serve / pets infer)")
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


def overhead(quick: bool, say: Say) -> None:
    from pets_benchmarks.he import run_he

    heading("8. What HE costs: the digits MLP against plaintext and TenSEAL's recipe")
    samples = 2 if quick else 4
    print(run_he(batch=4096, latency_samples=samples, recipe_samples=samples, progress=say))
