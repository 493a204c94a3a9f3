"""The JSON messages of the service, as pydantic models: the server answers with them,
the client validates what a server says against them (bounds included).

>>> from pets_protocols.service.schemas import ModelDescription
>>> ModelDescription.model_validate({
...     "backend": "ckks", "input_shape": [-3], "output_shape": [2],
...     "requirements": {}, "limits": {"max_rows": 1, "max_request_bytes": 1, "max_key_bytes": 1,
...                                   "idle_timeout": 1.0, "max_sessions": 1}})
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelDescription
...
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "PROTOCOL",
    "ErrorAnswer",
    "Health",
    "Limits",
    "InputRange",
    "ModelDescription",
    "SessionCreated",
    "TensorHeader",
]

#: name and version of this protocol; a client refuses a server that speaks another
PROTOCOL = "pets-inference/1"

#: the largest dimension or count anyone may announce (2**31, as pets' own loaders)
_MAX = 1 << 31
Dimension = Annotated[int, Field(ge=1, le=_MAX, strict=True)]
Count = Annotated[int, Field(ge=1, le=1 << 48, strict=True)]
Seconds = Annotated[float, Field(gt=0, le=1e9, allow_inf_nan=False)]
SessionId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{16,64}$")]


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Limits(_Message):
    """What one session may send; the client checks its requests against these."""

    max_rows: Dimension = Field(description="most samples in one inference request")
    max_request_bytes: Count = Field(description="largest ciphertext request body")
    max_key_bytes: Count = Field(description="largest public key set a session may upload")
    idle_timeout: Seconds = Field(description="seconds after which an unused session is closed")
    max_sessions: Dimension = Field(description="sessions the server holds at once")
    max_sessions_per_client: Dimension | None = Field(
        None, description="sessions one client (IP address) may hold")
    max_connections_per_client: Dimension | None = Field(
        None, description="connections one client (IP address) may hold open")


class ModelDescription(_Message):
    """The model's public description: what a client needs to make fitting keys.

    It holds the shapes and ``requirements`` (depth, matrix-product shapes, largest
    value, first product), never the weights.
    """

    protocol: Literal["pets-inference/1"] = "pets-inference/1"
    backend: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")] = Field(
        description="the pets backend whose public keys the server evaluates with"
    )
    input_shape: Annotated[list[Dimension], Field(min_length=1, max_length=8)]
    output_shape: Annotated[list[Dimension], Field(min_length=1, max_length=8)]
    requirements: dict[str, Any] = Field(
        description="pets.Requirements.to_dict(): what the keys must fit "
        "(read it with pets.Requirements.from_dict)"
    )
    limits: Limits


class SessionCreated(_Message):
    """A session holding one client's public keys."""

    session_id: SessionId
    key_id: Annotated[str, Field(max_length=128)] = Field(
        description="fingerprint of the uploaded key set; every tensor must carry it"
    )
    key_bytes: Count = Field(description="size of the uploaded public key set")
    idle_timeout: Seconds


class Health(_Message):
    """Liveness and load."""

    status: Literal["ok"] = "ok"
    sessions: int = Field(ge=0)
    inferences_running: int = Field(ge=0)
    workers: int = Field(ge=0)
    bytes_in_flight: int = Field(0, ge=0, description="request body bytes being received")


#: the largest value bound a tensor header may claim: no CKKS parameter set holds more
MAX_VALUE_BOUND = 2.0**50
Strict = Annotated[int, Field(strict=True)]


class TensorHeader(BaseModel):
    """The numbers a CKKS tensor's header announces, each range-checked before a worker
    parses a ciphertext; the row count and shape against the model are checked after.

    >>> TensorHeader.model_validate({"shape": [1, 8], "bound": 1e308})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for TensorHeader
    bound
      Input should be less than or equal to 1125899906842624 ...
    """

    model_config = ConfigDict(extra="ignore", frozen=True)  # the engine's loader checks the rest

    shape: Annotated[list[Strict], Field(min_length=1, max_length=2)]
    rows: Strict | None = None
    cols: Strict | None = None
    layout: Annotated[str, Field(max_length=32)] | None = None
    groups: Annotated[list[Annotated[int, Field(strict=True, ge=0, le=1 << 16)]],
                      Field(max_length=1 << 16)] | None = None
    replicated: Annotated[bool, Field(strict=True)] | None = None
    gathered: Annotated[bool, Field(strict=True)] | None = None
    staged_for: Annotated[list[Dimension], Field(min_length=2, max_length=2)] | None = None
    bound: Annotated[float, Field(ge=0, le=MAX_VALUE_BOUND, allow_inf_nan=False)] | None = None
    placement: Annotated[str, Field(max_length=1 << 20)] | None = None


class _Extension(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    input_bound: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None


class InputRange(BaseModel):
    """The part of ``Requirements.to_dict()`` a client checks inputs by: the largest
    ``|x|`` the model was calibrated for (a levelled backend's extension carries it).

    >>> InputRange.model_validate({"extension": {"kind": "levelled", "input_bound": 1.5}}).bound
    1.5
    >>> InputRange.model_validate({"max_abs": 3.0}).bound is None
    True
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    extension: _Extension | None = None

    @property
    def bound(self) -> float | None:
        return None if self.extension is None else self.extension.input_bound


class ErrorAnswer(_Message):
    """Every error answer: the pets error class name and its message (which names the fix)."""

    error: Annotated[str, Field(max_length=64)]
    message: Annotated[str, Field(max_length=1 << 16)]
