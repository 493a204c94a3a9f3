"""Under SecAgg+, the server plus one client cannot recover another client's update.

One round of ``federated.train``'s SecAgg+ apps (Flower's ``SecAggPlusWorkflow`` and
``secaggplus_mod``, real keys, real masks) runs in this process over a grid that
delivers each message to the client's app and keeps every message: the server's
whole view. The attacker is that server plus client ``c``, whose protocol state it
reads; it tries to unmask client ``j``'s vector. A control shows the same code
recovers ``j``'s update exactly once it holds ``threshold`` clients' shares, so
the first attack fails for the reason the docs give, not for a bug in the attack.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common import bytes_to_ndarray
from flwr.common.secure_aggregation.crypto.shamir import combine_shares
from flwr.common.secure_aggregation.crypto.symmetric_encryption import generate_shared_key
from flwr.common.secure_aggregation.quantization import dequantize
from flwr.common.secure_aggregation.secaggplus_constants import (
    RECORD_KEY_CONFIGS,
    RECORD_KEY_STATE,
    Key,
    Stage,
)
from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen
from flwr.serverapp import Grid
from flwr.supercore.primitives.asymmetric import bytes_to_private_key, bytes_to_public_key
from flwr.supercore.task_identity import TaskIdentity
from pets_protocols.federated.clientapps import Task, UpdateBoundMod, secagg_client_app
from pets_protocols.federated.local import LocalPlan, get_arrays
from pets_protocols.federated.servers import Run, secagg_server_app, secagg_shares

CLIENTS, BOUND = 4, 1.0
MOD = 2**32


class InProcessGrid(Grid):
    """Delivers each message to the destination's ClientApp, in this process; logs it all."""

    def __init__(self, apps: dict[int, tuple[ClientApp, Context]]) -> None:
        self.apps = apps
        self.log: list[tuple[Message, Message]] = []

    def set_run(self, run: Any) -> None:
        pass

    @property
    def run(self) -> Any:
        return SimpleNamespace(run_id=1)

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        raise NotImplementedError("the workflows build their own messages")

    def get_node_ids(self) -> Iterable[int]:
        return list(self.apps)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError("use send_and_receive")

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError("use send_and_receive")

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        replies = []
        for message in messages:
            app, context = self.apps[message.metadata.dst_node_id]
            delivered = Message(copy.deepcopy(message.content),  # as if serialised
                                dst_node_id=message.metadata.dst_node_id,
                                message_type=message.metadata.message_type,
                                group_id=message.metadata.group_id)
            reply = app(delivered, context)
            self.log.append((message, reply))
            replies.append(reply)
        return replies


class RecordingBound(UpdateBoundMod):
    """The client's own bounded update, kept as ground truth for the test."""

    updates: ClassVar[dict[int, np.ndarray]] = {}

    def __call__(self, message: Message, context: Context, call_next: Any) -> Message:
        reply = super().__call__(message, context, call_next)
        from flwr.common import parameters_to_ndarrays
        from flwr.compat.common import recorddict_compat as compat

        fitres = compat.recorddict_to_fitres(reply.content, keep_input=True)
        node = context.node_id
        RecordingBound.updates[node] = np.concatenate(
            [a.ravel() for a in parameters_to_ndarrays(fitres.parameters)])
        return reply


@pytest.fixture(scope="module")
def round_view() -> Iterator[tuple[InProcessGrid, dict[int, Context]]]:
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
        rng = np.random.default_rng(0)
        data = [(rng.normal(size=(20, 8)).astype(np.float32), rng.integers(0, 3, 20))
                for _ in range(CLIENTS)]
        initial = get_arrays(model)
        task = Task(model, data, LocalPlan(rounds=1, local_epochs=1, lr=0.5, batch_size=8,
                                           seed=0), tuple(initial))
        app = secagg_client_app(task, bound=RecordingBound(BOUND))
        contexts = {node: Context(run_id=1, node_id=node, node_config={"partition-id": node - 1},
                                  state=RecordDict(), run_config={})
                    for node in range(1, CLIENTS + 1)}
        grid = InProcessGrid({node: (app, context) for node, context in contexts.items()})
        run = Run()
        server = secagg_server_app(
            initial=list(initial.values()), rounds=1, clients=CLIENTS, bound=BOUND,
            noise_std=0.0, clipping_range=BOUND, hook=lambda r, a: {}, run=run, timeout=None,  # type: ignore[arg-type]
        )
        server(grid, Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                             run_config={}))
        assert not run.errors, run.errors
        assert run.meter is not None and [r.clients for r in run.meter.records] == [CLIENTS]
        yield grid, contexts
    finally:
        TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


def _stage(grid: InProcessGrid, stage: str) -> list[tuple[Message, Message]]:
    return [(m, r) for m, r in grid.log
            if m.content.config_records[RECORD_KEY_CONFIGS].get(Key.STAGE) == stage]


def _client_state(context: Context) -> Any:
    from flwr.client.mod.secure_aggregation.secaggplus_mod import SecAggPlusState

    return SecAggPlusState(**context.state.config_records[RECORD_KEY_STATE])


def _attack(grid: InProcessGrid, contexts: dict[int, Context], target: int,
            colluders: list[int]) -> np.ndarray:
    """The server's view plus the colluders' states, turned against ``target``'s vector."""
    masked = {r.metadata.src_node_id: [bytes_to_ndarray(b) for b in
                                        r.content.config_records[RECORD_KEY_CONFIGS][Key.MASKED_PARAMETERS]]
              for _, r in _stage(grid, Stage.COLLECT_MASKED_VECTORS)}[target]
    shapes = [a.shape for a in masked]
    # what the server holds legitimately: everyone's public keys (it forwarded them) ...
    keys_sent = {m.metadata.dst_node_id: m.content.config_records[RECORD_KEY_CONFIGS]
                 for m, _ in _stage(grid, Stage.SHARE_KEYS)}
    public = {int(node): value for node, value in keys_sent[target].items()
              if node != Key.STAGE}
    neighbours = [node for node in public if node != target]
    # ... and the shares of each active client's private-mask seed (the unmask stage)
    seed_shares = []
    for _, reply in _stage(grid, Stage.UNMASK):
        answer = reply.content.config_records[RECORD_KEY_CONFIGS]
        for owner, share in zip(answer[Key.NODE_ID_LIST], answer[Key.SHARE_LIST], strict=True):
            if owner == target:
                seed_shares.append(share)
    vector = [a.astype(np.int64) for a in masked]
    private = pseudo_rand_gen(combine_shares(seed_shares), MOD, shapes)
    vector = [(v - p) % MOD for v, p in zip(vector, private, strict=True)]
    # the colluders: their pairwise keys with the target, and their shares of its sk1
    states = {c: _client_state(contexts[c]) for c in colluders}
    known: dict[int, bytes] = {}
    for c, state in states.items():
        known[c] = generate_shared_key(bytes_to_private_key(state.sk1),
                                       bytes_to_public_key(public[target][0]))
    sk1_shares = [state.sk1_share_dict[target] for state in states.values()
                  if target in state.sk1_share_dict]
    threshold = secagg_shares(CLIENTS)[1]
    if len(sk1_shares) >= threshold:  # enough shares: the target's own key, so every pair key
        sk1 = bytes_to_private_key(combine_shares(sk1_shares))
        known = {k: generate_shared_key(sk1, bytes_to_public_key(public[k][0]))
                 for k in neighbours}
    for neighbour, key in known.items():
        mask = pseudo_rand_gen(key, MOD, shapes)
        sign = -1 if target > neighbour else 1  # the target added it if its id is larger
        vector = [(v + sign * m) % MOD for v, m in zip(vector, mask, strict=True)]
    values = dequantize(vector[1:], BOUND, 2**22)  # [0] is SecAgg+'s weight factor
    return np.concatenate([v.ravel() for v in values])


def _neighbours(grid: InProcessGrid, target: int) -> list[int]:
    keys_sent = {m.metadata.dst_node_id: m.content.config_records[RECORD_KEY_CONFIGS]
                 for m, _ in _stage(grid, Stage.SHARE_KEYS)}
    return sorted(int(n) for n in keys_sent[target] if n != Key.STAGE and int(n) != target)


def test_the_server_and_one_client_cannot_unmask_another(
    round_view: tuple[InProcessGrid, dict[int, Context]],
) -> None:
    grid, contexts = round_view
    for target in contexts:
        colluder = _neighbours(grid, target)[0]
        guess = _attack(grid, contexts, target, [colluder])
        truth = RecordingBound.updates[target]
        # masks are uniform mod 2**32: the guess is noise spread over [-BOUND, BOUND]
        assert np.max(np.abs(guess - truth)) > 0.5 * BOUND
        assert abs(np.corrcoef(guess, truth)[0, 1]) < 0.5


def test_threshold_clients_recover_it_exactly_so_the_attack_is_sound(
    round_view: tuple[InProcessGrid, dict[int, Context]],
) -> None:
    grid, contexts = round_view
    threshold = secagg_shares(CLIENTS)[1]
    target = 1
    guess = _attack(grid, contexts, target, _neighbours(grid, target)[:threshold])
    assert np.max(np.abs(guess - RecordingBound.updates[target])) < 1e-5  # quantisation step

