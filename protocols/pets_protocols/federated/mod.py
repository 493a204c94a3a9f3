"""The pets client mod: wraps any Flower ClientApp's train and evaluate functions.

On the way in it opens the global state the strategy sent (decrypts the sum of
the last round's proposals and divides by their count) and hands the wrapped
function a plain model, as Flower's own FedAvg would. On the way out of a
training function it turns the new model into a protected proposal:

1. pay for the round in the client's own :class:`pets.dp.Budget` (refuse with
   ``BudgetExceededError`` when the budget would be exceeded; nothing is sent),
2. clip the update ``new - global`` and add this client's noise share,
3. encrypt ``global + update`` under the federation's key (one ciphertext per
   4,096 parameters), so the aggregator can sum but not read it.

A state summing fewer proposals than the client's ``noise_clients`` is refused
unopened (``PrivacyError``): its noise would be short. The DP settings and the
key are the client's own (constructor arguments, or
read from the node's configuration), never taken from the server's messages:
a server cannot turn the protection off. Failures the client can name come
back to the server as an error reply ``"<PetsErrorType>: <message>"``.

>>> import pets
>>> from pets_protocols.federated.privacy import DPSettings
>>> mod = SecureUpdateMod(privacy=DPSettings.for_budget(8.0, 1e-5, rounds=3, noise_clients=2),
...                       key=pets.backend("ckks", depth=1).to_bytes(include_secret_key=True))
>>> # ClientApp(); @app.train("pets", mods=[mod]) def train(msg, context): ...
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord
from flwr.common.constant import ErrorCode

import pets
import pets.dp
from pets_protocols.federated import packing
from pets_protocols.federated.model import flatten, unflatten
from pets_protocols.federated.privacy import DPSettings
from pets_protocols.federated.records import (
    UPDATE,
    GlobalState,
    Template,
    is_state,
    plain_record,
    record_parameters,
    template_of,
    to_bytes_array,
)

__all__ = ["SecureUpdateMod", "open_global", "traffic_mod"]

logger = logging.getLogger(__name__)

Setting = Any  # a value, or a callable taking the client's flwr Context

#: metric keys a protected reply carries
EPSILON, EPSILON_ROUND, ROUNDS_PAID = "pets.epsilon", "pets.epsilon-round", "pets.rounds-paid"
BYTES_DOWN, BYTES_UP = "pets.bytes-down", "pets.bytes-up"
PROTECT_SECONDS = "pets.protect-seconds"


@lru_cache(maxsize=4)
def _load_keys(digest: str, data: bytes) -> pets.Backend:
    del digest  # part of the cache key only
    return pets.load_backend(data)


def keys_from(data: bytes) -> pets.Backend:
    """The federation's key set from its bytes, loaded once per process."""
    return _load_keys(hashlib.sha256(data).hexdigest(), data)


def open_global(
    record: ArrayRecord, keys: pets.Backend | None
) -> tuple[dict[str, np.ndarray], Template]:
    """The plain global model in ``record``: a pets state decrypted and averaged, or a
    plain model as is. Needs the secret key for an encrypted state."""
    if not is_state(record):
        params = record_parameters(record)
        return params, template_of(params)
    state = GlobalState.from_record(record)
    if isinstance(state.total, bytes):
        if keys is None:
            raise pets.MissingKeyError(
                "the global model is encrypted and this client holds no key; give the mod "
                "the federation's key set (SecureUpdateMod(key=...)) from the key authority"
            )
        total = packing.decrypt_vector(keys, keys.load_tensor(state.total), state.size)
    else:
        total = state.total
    return unflatten(total / state.count, state.template), state.template


def _check_noise_shares(record: ArrayRecord, settings: DPSettings) -> None:
    """Refuse to open a sum of fewer proposals than the noise needs: it would show the
    other clients' updates with less noise than they were promised."""
    if is_state(record):
        count = GlobalState.from_record(record).count
        if count < settings.noise_clients:
            raise pets.PrivacyError(
                f"the global state sums {count} clients' proposals, fewer than the "
                f"{settings.noise_clients} noise shares this client's DP settings need; it was "
                "not opened. Fix: give the server's strategy min_clients >= "
                f"{settings.noise_clients} (the clients' noise_clients)"
            )


def _resolve(setting: Setting, context: Context) -> Any:
    return setting(context) if callable(setting) else setting


def _array_record(message: Message) -> tuple[str, ArrayRecord]:
    records = message.content.array_records
    if len(records) != 1:
        raise pets.SerializationError(
            f"a pets federated message carries exactly one ArrayRecord, this one has "
            f"{len(records)} ({', '.join(records)}); send the model as the only ArrayRecord"
        )
    return next(iter(records.items()))


def _error_reply(message: Message, exc: pets.PetsError) -> Message:
    logger.warning("pets client refused the message: %s: %s", type(exc).__name__, exc)
    reason = f"{type(exc).__name__}: {exc}"
    return Message(Error(code=ErrorCode.MOD_FAILED_PRECONDITION, reason=reason), reply_to=message)


class SecureUpdateMod:
    """A Flower client mod: opens the encrypted global model, protects the client's reply.

    ``privacy``: :class:`DPSettings` (or a function of the flwr ``Context`` giving them);
    ``None`` sends updates without DP noise. ``key``: the federation's key-set bytes with
    the secret key (or a function of the ``Context``); ``None`` sends the noised update in
    the clear (the "DP only" mode). ``name`` keeps this mod's budget apart from others'
    in the node's state. ``budget_file``: a function of the ``Context`` giving the path of
    the client's budget file; the budget then lives there (surviving a restart of the
    node) instead of in the node's state.
    """

    def __init__(
        self,
        *,
        privacy: DPSettings | Callable[[Context], DPSettings] | None = None,
        key: bytes | Callable[[Context], bytes] | None = None,
        name: str = "pets",
        budget_file: Callable[[Context], str] | None = None,
    ) -> None:
        if privacy is None and key is None:
            raise pets.dp.DPConfigurationError(
                "SecureUpdateMod without privacy settings and without a key protects nothing. "
                "Fix: pass privacy=DPSettings(...), key=<key-set bytes>, or both; for no "
                "protection use Flower's FedAvg without this mod."
            )
        self.privacy = privacy
        self.key = key
        self.name = name
        self.budget_file = budget_file

    # ---- the client's budget, kept in the node's state between messages ------------

    def _state_key(self) -> str:
        return f"pets.budget.{self.name}"

    def _pay(self, settings: DPSettings, context: Context) -> pets.dp.Budget:
        """Record this round in the client's budget, or raise BudgetExceededError."""
        if self.budget_file is not None:
            return settings.pay_in_file(self.budget_file(context), label="federated round")
        record = context.state.config_records.get(self._state_key(), ConfigRecord({"rounds": 0}))
        paid = int(record["rounds"])  # type: ignore[arg-type]
        budget = settings.budget_after(paid)
        budget.spend_mechanism(settings.round_mechanism(), label=f"federated round {paid + 1}")
        context.state[self._state_key()] = ConfigRecord({"rounds": paid + 1})
        return budget

    # ---- the mod ----------------------------------------------------------------------

    def __call__(
        self, message: Message, context: Context, call_next: Callable[[Message, Context], Message]
    ) -> Message:
        category = message.metadata.message_type.split(".")[0]
        if category not in ("train", "evaluate"):
            return call_next(message, context)
        try:
            key = _resolve(self.key, context)
            keys = None if key is None else keys_from(key)
            settings: DPSettings | None = _resolve(self.privacy, context)
            record_key, record = _array_record(message)
            if settings is not None:
                _check_noise_shares(record, settings)
            global_params, template = open_global(record, keys)
            message.content[record_key] = plain_record(global_params)
            if category == "evaluate":
                return call_next(message, context)
            budget = None if settings is None else self._pay(settings, context)
            reply = call_next(message, context)
            if reply.has_error():
                return reply
            return self._protect(reply, global_params, template, settings, budget, keys)
        except pets.PetsError as exc:
            return _error_reply(message, exc)

    def _protect(
        self,
        reply: Message,
        global_params: dict[str, np.ndarray],
        template: Template,
        settings: DPSettings | None,
        budget: pets.dp.Budget | None,
        keys: pets.Backend | None,
    ) -> Message:
        record_key, record = _array_record(reply)
        new_params = record_parameters(record)
        if template_of(new_params) != template:
            raise pets.ShapeMismatchError(
                f"the training function returned parameters {template_of(new_params)}, but the "
                f"global model has {template}; return the same names and shapes"
            )
        started = time.perf_counter()
        start = flatten(global_params)
        update = flatten(new_params) - start
        if settings is not None:
            update = settings.privatize(update)
        proposal = start + update
        payload: Array = (
            to_bytes_array(packing.encrypt_vector(keys, proposal).to_bytes())
            if keys is not None
            else Array(proposal)
        )
        reply.content[record_key] = ArrayRecord({UPDATE: payload})
        metrics = reply.content.metric_records.get("metrics", MetricRecord())
        metrics[PROTECT_SECONDS] = time.perf_counter() - started
        reply.content["metrics"] = metrics
        if budget is not None and settings is not None:
            metrics[EPSILON] = float(budget.spent[0])
            metrics[EPSILON_ROUND] = float(settings.epsilon_per_round)
            metrics[ROUNDS_PAID] = len(budget.ledger)
            reply.content["metrics"] = metrics
        return reply


def traffic_mod(
    message: Message, context: Context, call_next: Callable[[Message, Context], Message]
) -> Message:
    """Counts the bytes of a message's records in and out; adds them to the reply's metrics.

    Put it first (outermost) in a mods list so it sees what travels.
    """
    down = sum(record.count_bytes() for record in message.content.values())
    reply = call_next(message, context)
    if reply.has_error():
        return reply
    up = sum(record.count_bytes() for record in reply.content.values())
    metrics = reply.content.metric_records.get("metrics", MetricRecord())
    metrics[BYTES_DOWN] = int(down)
    metrics[BYTES_UP] = int(up)
    reply.content["metrics"] = metrics
    return reply
