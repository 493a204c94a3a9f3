"""The client of the encrypted-inference service: it alone holds the secret key.

It fetches the model's public description, makes keys that fit it, uploads the
public part, and for each call encrypts, sends, receives and decrypts. It trusts
nothing the server says: descriptions are validated against bounded schemas,
answers are size-capped while they stream in, ciphertexts must load under the
client's own keys and have the expected shape, and any failure is a pets error.

>>> # with InferenceClient("http://127.0.0.1:8765") as client:
>>> #     logits = client.infer(x_test)
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from pydantic import BaseModel, ValidationError

import pets
from pets.errors import (
    CompileError,
    MissingKeyError,
    NonFiniteValueError,
    PetsError,
    RequestRefusedError,
    SerializationError,
    ServiceError,
    ServiceUnavailableError,
    ShapeMismatchError,
    UnsupportedModelError,
    ValueRangeError,
)
from pets.measure import record_bytes, record_received, record_round
from pets.network import delay_request
from pets_protocols.service.schemas import (
    ErrorAnswer,
    InputRange,
    ModelDescription,
    SessionCreated,
)

__all__ = ["InferenceClient", "Traffic", "check_inputs", "remote_error", "status_error"]

log = logging.getLogger("pets_protocols.service.client")

#: largest answer the client reads (a model's encrypted output is far smaller)
DEFAULT_MAX_ANSWER = 1 << 30


@dataclass
class Traffic:
    """Bytes this client sent and received, by kind."""

    key_bytes: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    requests: int = 0

    def __str__(self) -> str:
        return (f"{self.requests} requests: public keys {self.key_bytes / 2**20:.2f} MiB, "
                f"ciphertexts sent {self.request_bytes / 2**20:.2f} MiB, received "
                f"{self.response_bytes / 2**20:.2f} MiB")


def remote_error(name: object, message: str, status: int = 500) -> PetsError:
    """The pets error for an error answer naming class ``name``; for a name that is not
    a pets error, the service error its HTTP ``status`` stands for."""
    cls = getattr(pets.errors, name, None) if isinstance(name, str) else None
    if cls is UnsupportedModelError:
        return CompileError(message)
    if (isinstance(cls, type) and issubclass(cls, PetsError)
            and name in pets.errors.__all__):
        return cls(message)
    return status_error(status, message)


def status_error(status: int, message: str) -> ServiceError:
    """``RequestRefusedError`` for a 4xx, ``ServiceUnavailableError`` for a 503,
    ``ServiceError`` otherwise."""
    if 400 <= status < 500:
        return RequestRefusedError(message)
    if status == 503:
        return ServiceUnavailableError(message)
    return ServiceError(message)


def check_inputs(data: Any, input_shape: tuple[int, ...],
                 input_bound: float | None = None) -> np.ndarray:
    """``data`` flattened to (samples, features) if it fits ``input_shape`` and
    ``|x| <= input_bound`` (a server's description); a pets error naming the fix if not.

    >>> check_inputs([[0.5, 2.0]], (2,), 1.5)
    Traceback (most recent call last):
    ...
    pets.errors.ValueRangeError: inputs reach |x| = 2, beyond the |x| <= 1.5 the server's model \
was calibrated for; scale them as its example inputs were scaled, or ask its operator to \
restart pets serve with --example inputs that cover them
    """
    if hasattr(data, "detach"):
        data = data.detach().cpu().numpy()
    try:
        array = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ShapeMismatchError(f"the inputs are not an array of numbers ({exc}); pass a "
                                 f"numpy array of shape (n, *{input_shape})") from None
    size = int(np.prod(input_shape))
    if not (array.shape[1:] == input_shape or (array.ndim == 2 and array.shape[1] == size)):
        raise ShapeMismatchError(
            f"this model takes inputs of shape {input_shape}, got {array.shape}; "
            f"send a batch (n, *{input_shape})"
        )
    if len(array) == 0:
        raise ShapeMismatchError("no samples to send; pass a batch of at least one")
    if not np.isfinite(array).all():
        raise NonFiniteValueError("the inputs hold NaN or infinity; send finite numbers")
    largest = float(np.abs(array).max())
    if input_bound is not None and largest > input_bound:
        raise ValueRangeError(
            f"inputs reach |x| = {largest:.3g}, beyond the |x| <= {input_bound:.3g} the server's "
            "model was calibrated for; scale them as its example inputs were scaled, or ask "
            "its operator to restart pets serve with --example inputs that cover them"
        )
    return array.reshape(len(array), size)


class InferenceClient:
    """A session with a ``pets serve`` server: ``infer(x)`` returns the decrypted outputs.

    ``backend_options`` go to ``pets.backend(...)``; depth and rotation keys are
    sized from the requirements the server describes. ``local_address`` is the address
    this side connects from (on a host with several).
    """

    def __init__(self, url: str, *, timeout: float = 300.0,
                 max_answer_bytes: int = DEFAULT_MAX_ANSWER, local_address: str | None = None,
                 open_session: bool = True, **backend_options: Any) -> None:
        self.url = url.rstrip("/")
        self.max_answer_bytes = max_answer_bytes
        self.traffic = Traffic()
        self.session_id: str | None = None
        self._closed = False
        self._backend_options = backend_options
        self._http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(timeout, connect=10.0),
                                  follow_redirects=False,
                                  transport=httpx.HTTPTransport(local_address=local_address))
        try:
            self.description = self._fetch_description()
            self.input_shape = tuple(self.description.input_shape)
            self.output_shape = tuple(self.description.output_shape)
            self.requirements = pets.Requirements.from_dict(self.description.requirements)
            #: the largest |x| the server's model was calibrated for (None: no bound)
            self.input_bound = self._parse(json.dumps(self.description.requirements).encode(),
                                           InputRange, "input range").bound
            if open_session:
                self.open()
        except BaseException:
            self._http.close()
            raise

    def open(self) -> None:
        """Make keys that fit the model and open a session with their public part.

        Done by the constructor, or (``open_session=False``) by the first :meth:`infer`,
        once its input has passed :meth:`check`: a wrong input then costs no keys.
        """
        if self._closed:
            raise ServiceError("this client was closed; make a new InferenceClient")
        if self.session_id is None:
            self.backend = pets.backend(self.description.backend, **self._backend_options)
            self.backend.prepare(self.requirements)
            self._open_session()

    # ---- the protocol -----------------------------------------------------------------

    def _fetch_description(self) -> ModelDescription:
        description = self._parse(self._call("GET", "/model"), ModelDescription,
                                  "model description")
        if description.backend not in pets.available_backends():
            raise SerializationError(
                f"the server evaluates with a {description.backend!r} backend, which this pets "
                f"does not have ({', '.join(pets.available_backends())}); update pets"
            )
        return description

    def _open_session(self) -> None:
        keys = self.backend.public().to_bytes()
        limit = self.description.limits.max_key_bytes
        if len(keys) > limit:
            raise SerializationError(
                f"the public key set is {len(keys)} bytes, above the server's limit of {limit}; "
                "ask the operator for a larger pets serve --max-key-mib"
            )
        created = self._parse(self._call("POST", "/sessions", keys), SessionCreated, "session")
        if created.key_id != self.backend.key_id:
            raise SerializationError("the server opened the session for other keys than ours")
        self.session_id = created.session_id
        self.traffic.key_bytes += len(keys)
        log.info("session %s opened at %s: public keys %d bytes (%.1f MiB)", self.session_id,
                 self.url, len(keys), len(keys) / 2**20)

    def infer(self, data: Any, *, layout: str | None = None) -> np.ndarray:
        """Encrypt ``data`` (a batch of samples), have the server run the model, decrypt.

        Batches above the server's row limit go as several requests. ``layout``
        forces a packing (``"batched"`` or ``"per_sample"``); by default the backend
        picks it for the batch size.
        """
        flat = self.check(data)
        self.open()
        step = self.description.limits.max_rows
        parts = [self._infer_rows(flat[i:i + step], layout) for i in range(0, len(flat), step)]
        return np.concatenate(parts).reshape(len(flat), *self.output_shape)

    def _infer_rows(self, flat: np.ndarray, layout: str | None) -> np.ndarray:
        tensor = (self.backend.encrypt_for(flat, self.requirements) if layout is None
                  else self.backend.encrypt(flat, layout=layout))
        request = tensor.to_bytes()
        limit = self.description.limits.max_request_bytes
        if len(request) > limit:
            raise SerializationError(
                f"{len(flat)} encrypted samples make {len(request)} bytes, above the server's "
                f"limit of {limit}; send fewer samples per call"
            )
        answer = self._call("POST", f"/sessions/{self.session_id}/inferences", request)
        self.traffic.request_bytes += len(request)
        self.traffic.response_bytes += len(answer)
        log.info("inference on %d samples: sent %d bytes, received %d bytes", len(flat),
                 len(request), len(answer))
        result = self.backend.load_tensor(answer)  # refuses bytes not under our keys
        expected = (len(flat), int(np.prod(self.output_shape)))
        if tuple(result.shape) != expected:
            raise SerializationError(
                f"the server answered a tensor of shape {tuple(result.shape)}, expected "
                f"{expected}; it is broken or not serving the model it describes"
            )
        return np.asarray(self.backend.decrypt(result))

    def close(self) -> None:
        """Close the session (the server deletes the public keys) and the connection.

        A session the server already closed (idle expiry) is no error.
        """
        self._closed = True
        try:
            if self.session_id is not None:
                session, self.session_id = self.session_id, None
                try:
                    self._call("DELETE", f"/sessions/{session}")
                except MissingKeyError:
                    log.info("session %s had already been closed by the server", session)
        finally:
            self._http.close()

    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            self.close()
        else:  # keep the error that ended the block, not one from closing after it
            with contextlib.suppress(PetsError):
                self.close()

    # ---- checks and transport -----------------------------------------------------------

    def check(self, data: Any) -> np.ndarray:
        """``data`` as (samples, features), checked against the server's description (shape,
        and the input range the model was calibrated for) before anything is encrypted."""
        return check_inputs(data, self.input_shape, self.input_bound)

    def _call(self, method: str, path: str, body: bytes | None = None) -> bytes:
        """One request; the answer's body, or the pets error the server answered."""
        headers = {"content-type": "application/octet-stream"} if body is not None else None
        try:
            with self._http.stream(method, path, content=body, headers=headers) as response:
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_answer_bytes:
                        raise SerializationError(
                            f"the server's answer to {method} {path} exceeds "
                            f"{self.max_answer_bytes} bytes; it is broken or hostile"
                        )
                    chunks.append(chunk)
        except httpx.ConnectError as exc:
            raise ServiceUnavailableError(
                f"cannot reach {self.url} ({exc}); start the server first (pets serve)"
            ) from exc
        except httpx.TimeoutException as exc:
            raise ServiceUnavailableError(
                f"{self.url} did not answer {method} {path} in time ({exc!r}); it may be "
                "overloaded: retry or raise the client timeout") from exc
        except httpx.HTTPError as exc:
            raise ServiceError(f"{method} {self.url}{path} failed: {exc!r}; is the server "
                               "still running?") from exc
        record_bytes(len(body or b""))
        record_round()
        self.traffic.requests += 1
        answer = b"".join(chunks)
        record_received(len(answer))
        delay_request(len(body or b""), len(answer))  # pets.network(...): an emulated link
        if not 200 <= response.status_code < 300:  # no redirects are followed either
            raise self._error(response.status_code, answer)
        return answer

    def _error(self, status: int, answer: bytes) -> PetsError:
        try:
            body = ErrorAnswer.model_validate_json(answer)
        except ValidationError:
            return status_error(status, f"the server answered {status} without a pets "
                                        f"error: {answer[:200]!r}")
        return remote_error(body.error, f"the server refused the request ({status}): "
                                        f"{body.message}", status)

    @staticmethod
    def _parse(answer: bytes, schema: type[Any], what: str) -> Any:
        try:
            parsed: BaseModel = schema.model_validate_json(answer)
        except ValidationError as exc:  # also invalid or too deeply nested JSON
            detail = str(exc).splitlines()[:4]
            raise SerializationError(
                f"the server sent an invalid {what} ({'; '.join(detail)}); it is not a pets "
                "inference server of this version, or it is broken"
            ) from None
        return parsed
