"""Encrypted inference as a service, every party on this machine.

1. The model owner trains a digits classifier and exports it (``torch.export``).
2. The server (``pets serve``, its own process) loads it and waits for clients.
3. The client fetches the model's description, makes CKKS keys that fit it,
   uploads only the public keys, sends encrypted digits and decrypts the answers.

The server never holds the secret key; the client never sees the weights.

    python examples/encrypted_service.py [--quick]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from pets_protocols.service import InferenceClient
from pets_protocols.workloads import digits, train_digits_mlp

import pets


def start_server(model: Path, calibration: Path) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "pets", "serve", str(model), "--example", str(calibration),
         "--port", "0", "--workers", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert server.stdout is not None
    for line in server.stdout:
        print("  server |", line.rstrip())
        found = re.search(r"serving encrypted inference on (http://\S+)", line)
        if found:
            return server, found.group(1)
    raise SystemExit(f"the server exited ({server.wait()}) before it was ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="train briefly, send fewer digits")
    args = parser.parse_args()
    data = digits()
    samples = data.x_test[: 64 if args.quick else 256]

    with tempfile.TemporaryDirectory() as folder:
        print("model owner: training and exporting the 64-32-10 digits MLP")
        net = train_digits_mlp(epochs=10 if args.quick else 60)
        model, calibration = Path(folder) / "digits.pt2", Path(folder) / "calibration.npy"
        example = torch.tensor(data.x_train[:8], dtype=torch.float32)
        torch.export.save(torch.export.export(net, (example,)), model)
        np.save(calibration, data.x_train)

        server, url = start_server(model, calibration)
        try:
            print(f"client: keys, encryption and decryption here; the server is {url}")
            with pets.measure("client") as cost, InferenceClient(url) as client:
                logits = client.infer(samples)
            print(f"  {cost}")
            print(f"  traffic: {client.traffic}")
        finally:
            server.terminate()
            server.wait(timeout=30)

    plain = net(torch.tensor(samples, dtype=torch.float32)).detach().numpy()
    agree = float((logits.argmax(1) == plain.argmax(1)).mean())
    accuracy = float((logits.argmax(1) == data.y_test[: len(samples)]).mean())
    print(f"{len(samples)} encrypted digits: accuracy {accuracy:.4f}; predictions agree on "
          f"{agree:.1%} with the plaintext model; max |logit difference| "
          f"{float(np.abs(logits - plain).max()):.1e}")


if __name__ == "__main__":
    main()
