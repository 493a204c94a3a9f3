"""The lowerings pets ships: which torch operations compile, and why the others do not.

Each rule is registered for the module class, its functional forms, the
``Tensor`` method and the ATen operator ``torch.export`` produces, so fx-traced
and exported models compile alike.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import nn

import pets.nn as pets_nn
from pets.compiler.lowering import (
    Activation,
    Linear,
    Lowering,
    OpContext,
    Polynomial,
    Product,
    Square,
    Unsupported,
    register_lowering,
)

__all__: list[str] = []

aten = torch.ops.aten

# ---- affine operations: fused and probed --------------------------------------------


@register_lowering(
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
    nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
    nn.AlphaDropout, nn.ZeroPad2d, nn.ConstantPad1d, nn.ConstantPad2d,
    F.linear, F.conv1d, F.conv2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool2d,
    F.dropout, F.pad, torch.flatten, torch.reshape, torch.cat, torch.add, torch.sub,
    torch.neg, torch.mean, torch.sum, torch.transpose, torch.permute, torch.squeeze,
    torch.unsqueeze, operator.add, operator.sub, operator.neg, operator.getitem,
    "Tensor.view", "Tensor.reshape", "Tensor.flatten", "Tensor.contiguous", "Tensor.clone",
    "Tensor.add", "Tensor.sub", "Tensor.neg", "Tensor.mean", "Tensor.sum", "Tensor.squeeze",
    "Tensor.unsqueeze", "Tensor.transpose", "Tensor.permute", "Tensor.float",
    "Tensor.double", "Tensor.to", "Tensor.type", "Tensor.detach",
    aten.linear, aten.conv1d, aten.conv2d, aten.convolution, aten.avg_pool1d,
    aten.avg_pool2d, aten.adaptive_avg_pool2d, aten.flatten, aten.view, aten.reshape,
    aten._unsafe_view, aten.dropout, aten.clone, aten.alias, aten.add, aten.sub, aten.neg,
    aten.mean, aten.sum, aten.cat, aten.permute, aten.transpose, aten.t, aten.squeeze,
    aten.unsqueeze, aten.addmm, aten.constant_pad_nd, aten._to_copy, aten.contiguous,
    aten.expand, aten.slice, aten.select,
)
def _affine(op: OpContext) -> Lowering:
    return Linear()


@register_lowering(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
def _batch_norm_module(op: OpContext) -> Lowering:
    if op.module is not None and getattr(op.module, "running_mean", None) is None:
        return Unsupported(
            f"{type(op.module).__name__}(track_running_stats=False) normalises with statistics "
            "of the encrypted batch itself, which needs division and a square root.",
            "keep track_running_stats=True (the default) so it folds into the layer before",
        )
    return Linear()


@register_lowering(F.batch_norm, aten.batch_norm, aten._native_batch_norm_legit_no_training)
def _batch_norm_function(op: OpContext) -> Lowering:
    if op.arg(5, "training", False) is True:
        return Unsupported(
            "batch_norm runs in training mode: it normalises with statistics of the "
            "encrypted batch, which needs division and a square root.",
            "call model.eval() before torch.export (compile folds eval-mode statistics)",
        )
    return Linear()


@register_lowering(operator.mul, torch.mul, "Tensor.mul", aten.mul)
def _multiply(op: OpContext) -> Lowering:
    if len(op.data_args) == 2:
        return Square() if op.data_args[0] is op.data_args[1] else Product()
    return Linear()


@register_lowering(operator.truediv, torch.div, "Tensor.div", aten.div)
def _divide(op: OpContext) -> Lowering:
    numerator = op.node.args[0] if op.node.args else None
    if any(arg is not numerator for arg in op.data_args):
        return Unsupported(
            "divides by an encrypted value; HE has no division.",
            "divide only by plain constants, or multiply by a precomputed reciprocal",
        )
    return Linear()


@register_lowering(operator.matmul, torch.matmul, torch.mm, "Tensor.matmul", aten.matmul, aten.mm)
def _matmul(op: OpContext) -> Lowering:
    if len(op.data_args) == 2:
        return Unsupported(
            "multiplies two encrypted matrices; pets multiplies encrypted data by plain "
            "matrices only.",
            "make one operand a parameter (nn.Linear) or restructure the product",
        )
    if op.node.args and op.node.args[0] not in op.data_args:
        return Unsupported(
            "multiplies a plain matrix on the left of encrypted data (W @ x mixes samples).",
            "write it as x @ W.T or use nn.Linear",
        )
    return Linear()


# ---- squares and polynomials ----------------------------------------------------------


@register_lowering(pets_nn.Square, torch.square, "Tensor.square", aten.square)
def _square(op: OpContext) -> Lowering:
    return Square()


@register_lowering(operator.pow, torch.pow, "Tensor.pow", aten.pow)
def _power(op: OpContext) -> Lowering:
    exponent = op.arg(1, "exponent")
    if len(op.data_args) == 1 and op.node.args and op.node.args[0] is op.data_args[0]:
        if exponent == 2:
            return Square()
        if exponent == 1:
            return Linear()
        if isinstance(exponent, int) and exponent > 2:
            return Polynomial((0.0,) * exponent + (1.0,))
    return Unsupported(
        f"raises to the power {exponent!r}; only positive integer powers of encrypted "
        "values exist in HE.",
        "use x * x (pets.nn.Square) or a pets.nn.PolyActivation",
    )


@register_lowering(pets_nn.PolyActivation)
def _poly_activation(op: OpContext) -> Lowering:
    assert isinstance(op.module, pets_nn.PolyActivation)
    return Polynomial(tuple(float(c) for c in op.module.coefficients))


def _activation(name: str, *targets: object) -> None:
    def rule(op: OpContext) -> Lowering:
        if len(op.data_args) != 1:
            return Unsupported(
                f"{name} is applied to {len(op.data_args)} encrypted tensors at once.",
                f"apply {name} to one tensor",
            )
        return Activation(name)

    register_lowering(*targets)(rule)


_activation("relu", nn.ReLU, torch.relu, F.relu, "Tensor.relu", aten.relu)
_activation("sigmoid", nn.Sigmoid, torch.sigmoid, F.sigmoid, "Tensor.sigmoid", aten.sigmoid)
_activation("tanh", nn.Tanh, torch.tanh, F.tanh, "Tensor.tanh", aten.tanh)
_activation("gelu", nn.GELU, F.gelu, aten.gelu)
_activation("silu", nn.SiLU, F.silu, aten.silu)
_activation("softplus", nn.Softplus, F.softplus, aten.softplus)
_activation("leaky_relu", nn.LeakyReLU, F.leaky_relu, aten.leaky_relu)
_activation("elu", nn.ELU, F.elu, aten.elu)
_activation("relu6", nn.ReLU6, F.relu6, aten.relu6)
_activation("hardtanh", nn.Hardtanh, F.hardtanh, aten.hardtanh)
_activation("hardswish", nn.Hardswish, F.hardswish, aten.hardswish)
_activation("hardsigmoid", nn.Hardsigmoid, F.hardsigmoid, aten.hardsigmoid)

# ---- rejected, with the reason and the replacement ----------------------------------------


def _reject(problem: str, fix: str, *targets: object) -> None:
    def rule(op: OpContext) -> Lowering:
        return Unsupported(problem, fix)

    register_lowering(*targets, supported=False)(rule)


_reject(
    "takes a maximum, which needs comparisons that HE cannot do.",
    "use nn.AvgPool2d (same kernel_size and stride) instead of max pooling",
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    F.max_pool1d, F.max_pool2d, F.adaptive_max_pool2d, torch.max, torch.amax, "Tensor.max",
    aten.max_pool1d, aten.max_pool2d, aten.max_pool2d_with_indices, aten.adaptive_max_pool2d,
    aten.max, aten.amax,
)
_reject(
    "computes a softmax, which needs exp and a division that HE cannot do (and argmax "
    "does not need it).",
    "drop it and take argmax of the decrypted logits (or apply softmax after decrypting)",
    nn.Softmax, nn.LogSoftmax, nn.Softmin, F.softmax, F.log_softmax, torch.softmax,
    torch.log_softmax, "Tensor.softmax", "Tensor.log_softmax", aten.softmax, aten._softmax,
    aten.log_softmax, aten._log_softmax,
)
_reject(
    "is recurrent: it chains sigmoid/tanh gates and multiplies them by the state step "
    "after step, far beyond a practical HE depth.",
    "use a feed-forward model over a fixed-length window (nn.Conv1d or nn.Linear)",
    nn.LSTM, nn.GRU, nn.RNN, nn.LSTMCell, nn.GRUCell, nn.RNNCell, aten.lstm, aten.gru,
    aten.rnn_tanh, aten.rnn_relu,
)
_reject(
    "looks rows up by integer index, which cannot be done with encrypted indices.",
    "one-hot encode the input before encrypting and use nn.Linear(bias=False)",
    nn.Embedding, nn.EmbeddingBag, F.embedding, aten.embedding,
)
_reject(
    "normalises by statistics of the encrypted input itself (mean, division, square root).",
    "use BatchNorm (folded into the layer before at compile time) or remove the normalisation",
    nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.LocalResponseNorm,
    F.layer_norm, F.group_norm, F.instance_norm, aten.layer_norm, aten.native_layer_norm,
    aten.group_norm, aten.native_group_norm, aten.instance_norm,
)
_reject(
    "is attention: it multiplies encrypted queries by encrypted keys and takes a softmax.",
    "use a feed-forward or convolutional model",
    nn.MultiheadAttention, nn.Transformer, nn.TransformerEncoder, nn.TransformerDecoder,
    nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, F.scaled_dot_product_attention,
    aten.scaled_dot_product_attention,
)
_reject(
    "needs comparisons or exact non-polynomial functions (abs, sign, clamp, exp, log, sqrt) "
    "that HE cannot compute.",
    "remove it, or use an activation pets approximates (ReLU, Sigmoid, Tanh, GELU) or "
    "pets.nn.Square",
    torch.abs, torch.sign, torch.clamp, torch.exp, torch.log, torch.sqrt, torch.rsqrt,
    torch.argmax, "Tensor.abs", "Tensor.clamp", "Tensor.exp", "Tensor.log", "Tensor.sqrt",
    "Tensor.argmax", aten.abs, aten.sign, aten.clamp, aten.exp, aten.log, aten.sqrt,
    aten.rsqrt, aten.argmax,
)
