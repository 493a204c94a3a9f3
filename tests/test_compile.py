"""pets.compile's polynomial (HE) lowering: torch models traced, validated, lowered.

Every model here is compiled with ``approximate=True`` (the lowering CKKS gets by
default), so the plain backend runs in the clear exactly what CKKS computes. The
exact lowering that backends with comparisons get is tested in
``tests/test_compile_exact.py``.

Plain-backend results are compared with the float64 torch model at 1e-9; CKKS
results with the compiled arithmetic run in the clear (``model.simulate``) at
``CKKS_ATOL``, and approximated models with torch within the reported bound.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pets
from pets.backends.plain import PlainBackend
from pets.compiler import PrivateModel
from pets.compiler.layers import Affine, Polynomial, Square
from pets.errors import (
    CompileError,
    ModelIssue,
    ShapeMismatchError,
    UnsupportedModelError,
)

EXACT_ATOL = 1e-9


def compile_he(*args: Any, **kwargs: Any) -> PrivateModel:
    """``pets.compile`` with the polynomial (HE) lowering, whatever the backend."""
    return pets.compile(*args, approximate=True, **kwargs)
#: CKKS against the same arithmetic in the clear, for values up to ~20
CKKS_ATOL = 1e-2


def _ckks() -> pets.Backend:
    return pets.backend("ckks")  # a fresh, unsized backend: compile sizes it


@pytest.fixture(params=["plain", "ckks"])
def backend(request: pytest.FixtureRequest) -> pets.Backend:
    """A fresh backend per test: compile sizes a CKKS backend for its model."""
    if request.param == "ckks":
        return _ckks()
    return pets.backend("plain")


@pytest.fixture
def plain() -> pets.Backend:
    return pets.backend("plain")


def _seeded(seed: int = 0) -> None:
    torch.manual_seed(seed)


def _torch64(module: nn.Module, x: torch.Tensor) -> np.ndarray:
    """The model's output in float64 (what compile reproduces exactly)."""
    with torch.no_grad():
        out = copy.deepcopy(module).double().eval()(x.double())
    return np.asarray(out.reshape(len(x), -1).numpy())


def _check_matches(model: PrivateModel, module: nn.Module, x: torch.Tensor) -> None:
    got = model.predict(x).reshape(len(x), -1)
    if model.backend.name == "plain":
        np.testing.assert_allclose(got, _torch64(module, x), atol=EXACT_ATOL)
    else:
        np.testing.assert_allclose(got, model.simulate(x).reshape(len(x), -1), atol=CKKS_ATOL)
        np.testing.assert_allclose(got, _torch64(module, x), atol=CKKS_ATOL)


def _mlp() -> nn.Module:
    _seeded()
    return nn.Sequential(nn.Linear(8, 16), pets.nn.Square(), nn.Linear(16, 4)).eval()


def _cnn() -> nn.Module:
    _seeded()
    return nn.Sequential(
        nn.Conv2d(1, 3, kernel_size=3, stride=2, padding=1),
        pets.nn.Square(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(3 * 2 * 2, 5),
    ).eval()


# ---- exact models ------------------------------------------------------------------


def test_mlp_with_square_matches_torch(backend: pets.Backend) -> None:
    module, x = _mlp(), torch.randn(6, 8)
    model = compile_he(module, backend=backend, example_input=x)
    _check_matches(model, module, x)


def test_cnn_with_conv_avgpool_flatten_matches_torch(backend: pets.Backend) -> None:
    module, x = _cnn(), torch.randn(4, 1, 8, 8)
    model = compile_he(module, backend=backend, example_input=x)
    assert [type(layer) for layer in model.layers] == [Affine, Square, Affine]
    _check_matches(model, module, x)


def test_batchnorm_folds_into_the_layer_before_in_eval_mode(plain: pets.Backend) -> None:
    _seeded()
    module = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), pets.nn.Square(),
        nn.Flatten(), nn.Linear(4 * 5 * 5, 6), nn.BatchNorm1d(6),
    )
    for bn in (module[1], module[5]):
        assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
        bn.running_mean.uniform_(-1.0, 1.0)
        bn.running_var.uniform_(0.5, 2.0)
        nn.init.uniform_(bn.weight, 0.5, 2.0)
    module.eval()
    x = torch.randn(5, 2, 5, 5)
    model = compile_he(module, backend=plain, example_input=x)
    assert [type(layer) for layer in model.layers] == [Affine, Square, Affine]
    _check_matches(model, module, x)


def test_training_mode_model_warns_and_compiles_its_eval_behaviour(plain: pets.Backend) -> None:
    _seeded()
    module = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 2))
    module[1].running_mean.fill_(0.5)
    x = torch.randn(8, 4)
    with pytest.warns(UserWarning, match="training mode"):
        model = compile_he(module, backend=plain, example_input=x)
    assert module.training  # the caller's model is left as it was
    np.testing.assert_allclose(model.predict(x), _torch64(module, x), atol=EXACT_ATOL)


def test_functional_forms_compile_like_modules(plain: pets.Backend) -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(2 * 2 * 2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.avg_pool2d(self.conv(x), 2)
            h = torch.square(h) + h**2 * 0.5 - h * h / 4
            h = F.dropout(h.view(h.size(0), -1), 0.2, training=False)
            return self.fc(torch.flatten(h, 1)) * 2.0 + 1.0

    _seeded()
    module, x = Functional().eval(), torch.randn(3, 1, 6, 6)
    model = compile_he(module, backend=plain, example_input=x)
    _check_matches(model, module, x)


def test_residual_add_of_two_branches_compiles(backend: pets.Backend) -> None:
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner, self.outer = nn.Linear(6, 6), nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.outer(x + self.inner(x) * self.inner(x))

    _seeded()
    module, x = Residual().eval(), torch.randn(4, 6)
    model = compile_he(module, backend=backend, example_input=x)
    assert model.depth == 3  # affine, square, affine (x joins at the last affine)
    _check_matches(model, module, x)


def test_poly_activation_compiles_exactly(plain: pets.Backend) -> None:
    _seeded()
    module = nn.Sequential(nn.Linear(3, 5), pets.nn.PolyActivation([0.1, 0.5, 0.25]),
                           nn.Linear(5, 2)).eval()
    x = torch.randn(7, 3)
    model = compile_he(module, backend=plain, example_input=x)
    assert model.approximations == []
    _check_matches(model, module, x)


def test_exported_program_matches_torch_at_another_batch_size(plain: pets.Backend) -> None:
    module = _cnn()
    exported = torch.export.export(module, (torch.randn(4, 1, 8, 8),))
    model = compile_he(exported, backend=plain, example_input=torch.randn(4, 1, 8, 8))
    x = torch.randn(3, 1, 8, 8)  # the exported graph has batch 4 baked into its reshapes
    _check_matches(model, module, x)


# ---- approximated activations ------------------------------------------------------------

ACTIVATIONS: dict[str, Any] = {
    "relu": nn.ReLU(), "sigmoid": nn.Sigmoid(), "tanh": nn.Tanh(), "gelu": nn.GELU(),
    "relu-functional": torch.relu, "sigmoid-functional": torch.sigmoid,
    "tanh-functional": torch.tanh, "gelu-functional": F.gelu,
}


class _WithActivation(nn.Module):
    def __init__(self, activation: Any) -> None:
        super().__init__()
        self.fc1, self.fc2, self.act = nn.Linear(6, 12), nn.Linear(12, 3), activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_is_approximated_within_the_reported_bound(
    plain: pets.Backend, name: str
) -> None:
    _seeded()
    module, x = _WithActivation(ACTIVATIONS[name]).eval(), torch.randn(64, 6)
    model = compile_he(module, backend=plain, example_input=x)
    (approximation,) = model.approximations
    assert approximation.function == name.split("-")[0]
    assert approximation.interval_source == "calibrated"
    assert 0.0 < approximation.calibration_error <= approximation.max_error + 1e-12
    report = model.report()
    got, expected = model.predict(x), _torch64(module, x)
    assert np.max(np.abs(got - expected)) == pytest.approx(report.calibration_error)
    assert report.calibration_error <= report.output_error_bound
    assert approximation.max_error < 0.2


def test_approximated_model_on_ckks_matches_the_clear_computation() -> None:
    backend = _ckks()
    _seeded()
    module, x = _WithActivation(nn.Sigmoid()).eval(), torch.randn(8, 6)
    model = compile_he(module, backend=backend, example_input=x)
    got = model.predict(x)
    np.testing.assert_allclose(got, model.simulate(x), atol=CKKS_ATOL)
    bound = model.report().output_error_bound
    assert np.max(np.abs(got - _torch64(module, x))) <= bound + CKKS_ATOL
    assert (got.argmax(1) == _torch64(module, x).argmax(1)).mean() >= 0.75


def test_declared_ranges_override_calibration(plain: pets.Backend) -> None:
    _seeded()
    module, x = _WithActivation(nn.ReLU()).eval(), torch.randn(16, 6)
    by_function = compile_he(module, backend=plain, example_input=x, ranges={"relu": (-4, 4)})
    by_node = compile_he(module, backend=plain, example_input=x, ranges={"act": (-3, 5)})
    everywhere = compile_he(module, backend=plain, example_input=x, activation_range=(-2, 2))
    assert by_function.approximations[0].interval == (-4.0, 4.0)
    assert by_node.approximations[0].interval == (-3.0, 5.0)
    assert everywhere.approximations[0].interval == (-2.0, 2.0)
    assert by_function.approximations[0].interval_source == "declared"


def test_ranges_naming_no_activation_is_rejected(plain: pets.Backend) -> None:
    module = _WithActivation(nn.ReLU()).eval()
    with pytest.raises(ValueError, match="match no activation"):
        compile_he(module, backend=plain, example_input=torch.randn(4, 6),
                     ranges={"sigmoid": (-1, 1)})


def test_degree_option_sets_degree_and_depth(plain: pets.Backend) -> None:
    _seeded()
    module, x = _WithActivation(nn.Tanh()).eval(), torch.randn(16, 6)
    default = compile_he(module, backend=plain, example_input=x)
    higher = compile_he(module, backend=plain, example_input=x, degrees={"tanh": 7})
    assert default.approximations[0].degree == 3
    assert higher.approximations[0].degree == 7
    assert (default.depth, higher.depth) == (1 + 2 + 1, 1 + 4 + 1)  # degree 3: depth 2
    assert higher.approximations[0].max_error < default.approximations[0].max_error


# ---- requirements and value ranges -----------------------------------------------------


class _RecordingBackend(PlainBackend):
    prepared: list[pets.Requirements]

    def prepare(self, requirements: pets.Requirements) -> None:
        self.prepared = [*getattr(self, "prepared", []), requirements]


def test_requirements_of_linear_square_linear() -> None:
    backend = _RecordingBackend()
    module, x = _mlp(), torch.randn(6, 8)
    model = compile_he(module, backend=backend, example_input=x)
    requirements = model.requirements
    assert backend.prepared == [requirements]
    assert model.levelled_requirements.depth == 3
    assert model.levelled_requirements.matmul_shapes == ((8, 16), (16, 4))
    assert requirements.max_rows == 6
    # a sound bound for inputs in the calibrated range: at least every calibrated value
    assert requirements.max_abs == pytest.approx(model.ranges.largest)
    assert requirements.max_abs >= max(model.value_ranges.values())
    assert isinstance(requirements.max_abs, float)


def test_value_ranges_record_the_largest_value_of_each_layer(plain: pets.Backend) -> None:
    module, x = _mlp(), torch.randn(6, 8)
    model = compile_he(module, backend=plain, example_input=x)
    with torch.no_grad():
        hidden = module[0](x)
    assert model.value_ranges["1 (Square)"] == pytest.approx(float((hidden**2).max()), rel=1e-6)
    assert model.value_ranges["input"] == pytest.approx(float(x.abs().max()))


def test_max_rows_option_overrides_the_example_batch(plain: pets.Backend) -> None:
    model = compile_he(_mlp(), backend=plain, example_input=torch.randn(6, 8), max_rows=100)
    assert model.requirements.max_rows == 100


# ---- unsupported models: every issue at once ---------------------------------------------


class _Unsupported(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.pool = nn.MaxPool2d(2)
        self.norm = nn.LayerNorm(6)
        self.fc = nn.Linear(4 * 6, 10)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.conv(x)).flatten(2)[..., :6]
        h = torch.exp(self.norm(h)).flatten(1)
        h = h / (h + 1.0)
        return self.softmax(self.fc(h))


def test_unsupported_model_lists_every_issue() -> None:
    with pytest.raises(UnsupportedModelError) as caught:
        compile_he(_Unsupported().eval(), backend="plain", example_input=torch.randn(2, 1, 8, 8))
    issues = caught.value.issues
    assert type(caught.value) is UnsupportedModelError
    assert all(isinstance(issue, ModelIssue) for issue in issues)
    assert [issue.where for issue in issues] == ["pool", "norm", "exp", "truediv", "softmax"]
    by_where = {issue.where: issue for issue in issues}
    assert "AvgPool2d" in by_where["pool"].fix
    assert "argmax" in by_where["softmax"].fix
    assert "division" in by_where["truediv"].problem
    assert str(issues[0]) in str(caught.value)


def test_exported_unsupported_model_lists_every_issue() -> None:
    exported = torch.export.export(_Unsupported().eval(), (torch.randn(2, 1, 8, 8),))
    with pytest.raises(UnsupportedModelError) as caught:
        compile_he(exported, backend="plain", example_input=torch.randn(2, 1, 8, 8))
    assert [issue.where for issue in caught.value.issues] == [
        "pool", "norm", "exp", "div", "softmax"
    ]


def test_recurrent_and_embedding_layers_are_rejected() -> None:
    class Sequence(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.lstm = nn.Embedding(10, 4), nn.LSTM(4, 4, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lstm(self.embed(x.long()))[0]

    with pytest.raises(UnsupportedModelError) as caught:
        compile_he(Sequence(), backend="plain", example_input=torch.ones(2, 3))
    wheres = [issue.where for issue in caught.value.issues]
    assert "embed" in wheres and "lstm" in wheres


def test_in_place_operation_is_rejected() -> None:
    class InPlace(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x * 2.0
            y.add_(1.0)
            return y

    with pytest.raises(UnsupportedModelError, match="in-place") as caught:
        compile_he(InPlace(), backend="plain", example_input=torch.randn(2, 3))
    assert [issue.where for issue in caught.value.issues] == ["add_"]


def test_untraceable_control_flow_is_reported_as_an_issue() -> None:
    class Branching(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x

    with pytest.raises(UnsupportedModelError, match=r"torch\.export"):
        compile_he(Branching(), backend="plain", example_input=torch.randn(2, 3))


def test_operation_mixing_samples_is_rejected() -> None:
    class Centering(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x - x.mean(0, keepdim=True)

    with pytest.raises(UnsupportedModelError, match="each sample"):
        compile_he(Centering(), backend="plain", example_input=torch.randn(4, 3))


def test_batchnorm_without_running_statistics_is_rejected() -> None:
    module = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3, track_running_stats=False))
    with pytest.raises(UnsupportedModelError, match="track_running_stats"):
        compile_he(module.eval(), backend="plain", example_input=torch.randn(4, 3))


def test_missing_example_input_says_what_to_pass() -> None:
    with pytest.raises(CompileError, match="example_input"):
        compile_he(_mlp(), backend="plain", example_input=None)


# ---- PrivateModel API ---------------------------------------------------------------------


def test_wrong_feature_count_raises_shape_mismatch_naming_the_size(plain: pets.Backend) -> None:
    model = compile_he(_mlp(), backend=plain, example_input=torch.randn(4, 8))
    with pytest.raises(ShapeMismatchError, match="takes 8 features"):
        model(plain.encrypt(np.ones((2, 5))))
    with pytest.raises(ShapeMismatchError, match=r"\(8,\)"):
        model.encrypt(np.ones((2, 5)))


def test_encrypt_flattens_images_and_model_accepts_backend_encrypt(plain: pets.Backend) -> None:
    module, x = _cnn(), torch.randn(4, 1, 8, 8)
    model = compile_he(module, backend=plain, example_input=x)
    assert model.encrypt(x).shape == (4, 64)
    direct = plain.decrypt(model(plain.encrypt(x.reshape(4, -1))))
    np.testing.assert_allclose(direct, model.predict(x), atol=EXACT_ATOL)


def test_predict_round_trip_returns_output_shape(backend: pets.Backend) -> None:
    module, x = _mlp(), torch.randn(5, 8)
    model = compile_he(module, backend=backend, example_input=x)
    out = model.predict(x.numpy())
    assert out.shape == (5, 4)
    assert (out.argmax(1) == _torch64(module, x).argmax(1)).all()


def test_encrypt_uses_the_backends_layout_choice() -> None:
    asked: list[int] = []

    class ChoosingBackend(PlainBackend):
        def choose_layout(self, rows: int) -> str:
            asked.append(rows)
            return "dense"

    backend = ChoosingBackend()
    model = compile_he(_mlp(), backend=backend, example_input=torch.randn(4, 8))
    model.encrypt(np.ones((3, 8)))
    assert asked == [3]


def test_ckks_layouts_both_run_the_model() -> None:
    backend = _ckks()
    module, x = _mlp(), torch.randn(3, 8)
    model = compile_he(module, backend=backend, example_input=x)
    for layout in ("batched", "per_sample"):
        tensor = model.encrypt(x, layout=layout)
        assert tensor.layout == layout
        np.testing.assert_allclose(model.decrypt(model(tensor)), _torch64(module, x),
                                   atol=CKKS_ATOL)


def test_server_runs_the_model_with_the_public_keys_only() -> None:
    backend = _ckks()
    module, x = _mlp(), torch.randn(3, 8)
    client = compile_he(module, backend=backend, example_input=x)
    server = client.for_backend(backend.public())
    assert not server.backend.has_secret_key
    output = server(client.encrypt(x))
    np.testing.assert_allclose(client.decrypt(output), _torch64(module, x), atol=CKKS_ATOL)
    with pytest.raises(pets.MissingKeyError):
        server.decrypt(output)


def test_for_backend_rejects_other_keys(plain: pets.Backend) -> None:
    model = compile_he(_mlp(), backend=plain, example_input=torch.randn(2, 8))
    with pytest.raises(pets.KeyMismatchError):
        model.for_backend(pets.backend("plain"))


def test_report_lists_layers_depth_and_approximation_errors(plain: pets.Backend) -> None:
    model = compile_he(_WithActivation(nn.GELU()).eval(), backend=plain,
                         example_input=torch.randn(16, 6))
    text = str(model)
    assert "depth 5" in text and "gelu" in text and "max error" in text
    assert len(model.report().layers) == len(model.layers) == 3
    assert isinstance(model.layers[1], Polynomial)
    assert "depth 5" in repr(model)


def test_compile_is_callable_from_the_package_and_the_module() -> None:
    from pets.compiler import compile as compile_function

    module, x = _mlp(), torch.randn(2, 8)
    assert isinstance(compile_he(module, backend="plain", example_input=x), pets.PrivateModel)
    assert isinstance(compile_function(module, backend="plain", example_input=x), PrivateModel)


def test_import_pets_does_not_import_torch() -> None:
    code = "import sys, pets; pets.backend('plain'); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "False"
