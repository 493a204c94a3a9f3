"""The tour's attack section: what a shared update gives away, and what each technique stops."""

from __future__ import annotations

from pets_tour.common import Say, heading


def attacks(quick: bool, say: Say) -> None:
    import numpy as np
    import torch

    import pets
    from pets.attacks import clip_and_noise, gradient_inversion

    heading("7. The attacks each technique stops: one digit's training update, read back")
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    image = torch.tensor(x[:1] / 16.0, dtype=torch.float32)
    loss = torch.nn.functional.cross_entropy(net(image), torch.tensor(y[:1]))
    update = torch.autograd.grad(loss, list(net.parameters()))
    say("a client's update of one digit, as plain federated learning would send it")
    for name, gradients in (
        ("the plain update (FedAvg in the clear)", update),
        ("clipped to norm 1, noise multiplier 0.01 (DP-SGD / DP federated)",
         clip_and_noise(update, max_grad_norm=1.0, noise_multiplier=0.01, seed=0)),
        ("clipped to norm 1, noise multiplier 0.1",
         clip_and_noise(update, max_grad_norm=1.0, noise_multiplier=0.1, seed=0)),
    ):
        report = gradient_inversion(net, gradients, input_shape=(64,), num_classes=10,
                                    method="analytic", true_inputs=image.numpy(),
                                    true_labels=y[:1])
        psnr = report.psnr if report.psnr is not None else float("nan")
        quality = "exact" if psnr == float("inf") else f"PSNR {psnr:.1f} dB"
        print(f"  {name}: the digit comes back {quality} (a blank guess scores about 6 dB), "
              f"label {'recovered' if report.label_accuracy == 1.0 else 'not recovered'}")
    say("with encrypted aggregation the aggregator holds a CKKS ciphertext, not the update")
    be = pets.backend("ckks", depth=1)
    flat = np.concatenate([g.detach().numpy().ravel() for g in update])
    ciphertext = be.encrypt(flat.reshape(1, -1)[:, :64])
    server = pets.load_backend(be.public().to_bytes())
    try:
        server.decrypt(server.load_tensor(ciphertext.to_bytes()))
    except pets.MissingKeyError:
        print("  the aggregator's copy of the keys cannot decrypt (MissingKeyError): the attack "
              "has nothing to read; only the clients' average is ever decrypted")
    print("  under MPC each party holds uniformly random shares of the update; under HE "
          "inference the server never holds a decryption key")
