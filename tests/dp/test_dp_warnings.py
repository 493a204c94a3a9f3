"""DP-SGD is quiet about what is harmless and still says what is not."""

from __future__ import annotations

import subprocess
import sys

TRAIN = """
import warnings
import torch
import pets.dp
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
data = TensorDataset(torch.randn(256, 8), torch.randint(0, 2, (256,)))
training = pets.dp.make_private(
    module=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
    data_loader=DataLoader(data, batch_size=32), target_epsilon=2.0, target_delta=1e-5,
    epochs=3, max_grad_norm=1.0, accountant="rdp",
)
for epoch in range(3):
    for x, y in training.data_loader:
        if len(y) == 0:
            continue
        training.optimizer.zero_grad()
        torch.nn.functional.cross_entropy(training.module(x), y).backward()
        training.optimizer.step()
warnings.warn("something the user must see", UserWarning)
"""


def test_dp_sgd_shows_the_insecure_rng_warning_once_and_no_hook_warnings() -> None:
    """Under ``-W always`` torch used to print its hook warning on every backward pass (24 here,
    ~130 for the 15-epoch digits run); it is harmless for Opacus' hooks and now silenced."""
    result = subprocess.run(
        [sys.executable, "-W", "always", "-c", TRAIN],
        capture_output=True, text=True, timeout=300, check=True,
    )
    assert "Full backward hook is firing" not in result.stderr
    assert result.stderr.count("InsecureRNGWarning") == 1
    assert result.stderr.count("UserWarning: something the user must see") == 1
