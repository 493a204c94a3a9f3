"""HE beyond the digits MLP: the tutorial CNN, a CIFAR-size CNN, core scaling, key bytes.

Each section measures pets and its baseline in the same run and reports ratios:

* **cnn**: TenSEAL's tutorial MNIST CNN (on the digits upsampled to 28x28),
  per-sample latency beside the tutorial's own recipe (``im2col_encoding``,
  ``conv2d_im2col``, ``pack_vectors``, ``mm``) at the same number of threads,
  batched throughput, and agreement of predictions with plaintext;
* **cifar**: a 3x32x32 model (two conv 3x3 + square + avg-pool blocks, a linear
  head), compiled and run on one image in a fresh process (its peak memory is
  that process's), then on several images with ``workers``;
* **scaling**: the digits MLP with 1, 2, ... worker processes, both packings;
* **keys**: the public key set a server receives, against TenSEAL's
  all-rotations context at the same parameters.

>>> from pets_benchmarks.he_models import run_he_models
>>> print(run_he_models(sections=("keys",)))                  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import pets
from pets_benchmarks.baselines import RecipeContext, TutorialCNN
from pets_benchmarks.he import HEReport
from pets_benchmarks.report import Table
from pets_benchmarks.workloads import (
    cifar_like,
    digits,
    digits_28,
    train_cifar_cnn,
    train_digits_mlp,
    train_tutorial_cnn,
)

__all__ = ["ModelsReport", "cifar_run", "run_he_models"]

SECTIONS = ("cnn", "cifar", "scaling", "keys")


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _peak_mib() -> float:
    """This process's peak resident memory since it started its program. ``ru_maxrss``
    survives exec: a run started from a large process (``pets bench --record`` after
    other sections) would report its parent's size, so Linux's VmHWM comes first."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cnn(report: HEReport, quick: bool, say: Callable[[str], None]) -> None:
    import torch

    say("tutorial CNN: training on digits upsampled to 28x28")
    net = train_tutorial_cnn(epochs=2 if quick else 8)
    data = digits_28()
    count = 2 if quick else 6
    images = data.x_test[:count]
    with torch.no_grad():
        plain = net(torch.tensor(images, dtype=torch.float32)).double().numpy()
    say("tutorial CNN: compiling for CKKS")
    backend = pets.backend("ckks")
    compile_s, model = _timed(lambda: pets.compile(net, backend=backend,
                                                   example_input=data.x_train))
    model(model.encrypt(images[:1]))  # warm: diagonals encoded once per layer
    encrypt_s, singles = _timed(lambda: [model.encrypt(images[i : i + 1])
                                         for i in range(count)])
    infer_s, outputs = _timed(lambda: [model(s) for s in singles])
    logits = np.concatenate([model.decrypt(o) for o in outputs])
    agree = float(np.mean(logits.argmax(1) == plain.argmax(1)))
    latency = infer_s / count
    table = report.table
    table.add("CNN per-sample (pets, 1 process)", count, 1e3 * latency,
              1e3 * encrypt_s / count, agree, float(np.abs(logits - plain).max()))
    for threads in (1, 2):
        say(f"tutorial CNN: TenSEAL's recipe with {threads} thread(s)")
        tutorial = TutorialCNN(net, threads=threads)
        encrypted = [tutorial.encrypt(image) for image in images]
        start = time.perf_counter()
        results = [tutorial.forward(x, w) for x, w in encrypted]
        recipe_s = time.perf_counter() - start
        values = np.array([r.decrypt() for r in results])
        recipe_agree = float(np.mean(values.argmax(1) == plain.argmax(1)))
        table.add(f"CNN TenSEAL tutorial recipe ({threads} thread)", count,
                  1e3 * recipe_s / count, float("nan"), recipe_agree,
                  float(np.abs(values - plain).max()))
        report.ratios[f"CNN per-sample latency / TenSEAL recipe, {threads} thread(s) "
                      "(target <= 0.25)"] = latency / (recipe_s / count)
    if not quick:
        say("tutorial CNN: batched (one ciphertext chunk)")
        rows = min(len(data.x_test), 540)
        batch = model.encrypt(data.x_test[:rows], layout="batched")
        batched_s, out = _timed(lambda: model(batch))
        with torch.no_grad():
            expected = net(torch.tensor(data.x_test[:rows], dtype=torch.float32)).numpy()
        batched_agree = float(np.mean(model.decrypt(out).argmax(1) == expected.argmax(1)))
        table.add("CNN batched (pets)", rows, 1e3 * batched_s / rows, float("nan"),
                  batched_agree, float("nan"))
    report.ratios["CNN per-sample predictions equal to plaintext (share)"] = agree
    report.parameters["cnn"] = {"compile_s": compile_s, **backend.describe()}


def cifar_run(images: int = 1, workers: int = 1,
              channels: Sequence[int] = (8, 16)) -> dict[str, Any]:
    """Compile the CIFAR-size model and run ``images`` images (per-sample) in this process;
    returns times, peak memory (MiB) and agreement with plaintext."""
    import torch

    net = train_cifar_cnn((int(channels[0]), int(channels[1])), epochs=1)
    data = cifar_like()
    start_peak = _peak_mib()
    backend = pets.backend("ckks")
    compile_s, model = _timed(lambda: pets.compile(net, backend=backend,
                                                   example_input=data.x_train[:256]))
    compile_peak = _peak_mib()
    x = data.x_test[:images]
    with torch.no_grad():
        plain = net(torch.tensor(x, dtype=torch.float32)).double().numpy()
    first_s, _ = _timed(lambda: model(model.encrypt(x[:1])))
    encrypted = model.encrypt(x, layout="per_sample")
    if workers > 1:
        model(encrypted, workers=workers)  # warm: start the workers, encode their diagonals
    warm_s, out = _timed(lambda: model(encrypted, workers=workers))
    logits = model.decrypt(out)
    model.close()
    return {
        "compile_s": compile_s, "first_image_s": first_s, "warm_s": warm_s, "images": images,
        "workers": workers, "agree": float(np.mean(logits.argmax(1) == plain.argmax(1))),
        "max_error": float(np.abs(logits - plain).max()),
        "peak_mib": _peak_mib(), "compile_peak_mib": compile_peak, "start_mib": start_peak,
        "parameters": backend.describe()["why"],
        "batched_estimate": str(model.estimate(max(images, 1), "batched")),
    }


def _cifar(report: HEReport, quick: bool, say: Callable[[str], None]) -> None:
    runs = [(1, 1)] if quick else [(1, 1), (4, 1), (4, 2)]
    for images, workers in runs:
        say(f"CIFAR-size CNN: {images} image(s), {workers} worker(s), in a fresh process")
        code = (f"import json, pets_benchmarks.he_models as m; "
                f"print(json.dumps(m.cifar_run({images}, {workers})))")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        report.table.add(f"CIFAR 3x32x32 per-sample ({workers} worker)", images,
                         1e3 * result["warm_s"] / images, float("nan"), result["agree"],
                         result["max_error"])
        if (images, workers) == (1, 1):
            report.ratios["CIFAR compile s (today 27 s)"] = result["compile_s"]
            report.ratios["CIFAR first image s, compile included (today 27 + 50 s)"] = (
                result["compile_s"] + result["first_image_s"])
            report.ratios["CIFAR one image, warm s (today 50 s)"] = result["warm_s"]
            report.ratios["CIFAR peak memory GiB, compile + one image (target < 2)"] = (
                result["peak_mib"] / 1024)
            report.ratios["CIFAR time / today's (27 + 50 s) (target < 0.2)"] = (
                (result["compile_s"] + result["first_image_s"]) / 77.0)
            report.parameters["cifar"] = result
        if workers > 1:
            report.ratios[f"CIFAR {images} images with {workers} workers, s per image"] = (
                result["warm_s"] / images)


def _scaling(report: HEReport, quick: bool, say: Callable[[str], None]) -> None:
    net = train_digits_mlp(epochs=10 if quick else 60)
    data = digits()
    backend = pets.backend("ckks")
    model = pets.compile(net, backend=backend, example_input=data.x_train)
    counts = sorted({1, 2, *(c for c in (4, 8, 16) if c <= (os.cpu_count() or 1))})
    slots = backend.describe()["slots"]
    rows = {"per_sample": 16 if quick else 64,
            "batched": min(len(counts) and max(counts), 16) * slots}
    for layout, count in rows.items():
        x = np.tile(data.x_test, (-(-count // len(data.x_test)), 1))[:count]
        encrypted = model.encrypt(x, layout=layout)
        base = None
        for workers in counts:
            model(encrypted, workers=workers)  # warm: start the workers, encode diagonals
            say(f"scaling: {layout}, {count} samples, {workers} worker(s)")
            start = time.perf_counter()
            model(encrypted, workers=workers)
            elapsed = time.perf_counter() - start
            base = elapsed if base is None else base
            report.table.add(f"digits MLP {layout}, {workers} worker(s)", count,
                             1e3 * elapsed / count, float("nan"), float("nan"), float("nan"))
            report.ratios[f"speed-up {layout}, {workers} workers / 1"] = base / elapsed
    model.close()


def _keys(report: HEReport, quick: bool, say: Callable[[str], None]) -> None:
    net = train_digits_mlp(epochs=5)
    data = digits()
    backend = pets.backend("ckks")
    pets.compile(net, backend=backend, example_input=data.x_train)
    public = len(backend.public().to_bytes())
    params = backend.describe()
    say("keys: TenSEAL's all-rotations context at the same parameters")
    recipe = RecipeContext(params["poly_modulus_degree"], params["coeff_mod_bit_sizes"],
                           params["scale_bits"])
    theirs = recipe.public_bytes()
    report.ratios["public key bytes, pets / TenSEAL all-rotations (target <= 0.25)"] = (
        public / theirs)
    report.parameters["keys"] = {"pets_public_bytes": public, "tenseal_public_bytes": theirs,
                                 "rotation_steps": params["rotation_steps"],
                                 "coeff_mod_bit_sizes": params["coeff_mod_bit_sizes"]}


class ModelsReport(HEReport):
    """The table, the ratios the targets are stated in, and the parameters used."""

    def __str__(self) -> str:
        lines = [str(self.table), "", "ratios (same run):"]
        lines += [f"  {name:<72} {value:10.4g}" for name, value in self.ratios.items()]
        lines.append(f"parameters: {self.parameters}")
        return "\n".join(lines)


def run_he_models(*, sections: Sequence[str] = SECTIONS, quick: bool = False,
                  progress: Callable[[str], None] | None = None) -> HEReport:
    """Measure the sections named (see the module docstring); ratios from one run."""
    say = progress or (lambda _message: None)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    table = Table(["workload", "samples", "ms per sample", "encrypt ms/sample",
                   "predictions = plaintext", "max |logit error|"])
    report = ModelsReport(table)
    runners = {"cnn": _cnn, "cifar": _cifar, "scaling": _scaling, "keys": _keys}
    for name in sections:
        runners[name](report, quick, say)
    report.parameters["cores"] = os.cpu_count()
    return report


if __name__ == "__main__":
    chosen = tuple(sys.argv[1:]) or SECTIONS
    print(run_he_models(sections=chosen, progress=lambda m: print(m, file=sys.stderr)))
