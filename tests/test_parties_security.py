"""Parties prove they belong to the run, and nothing a peer sends is unpickled.

Each case of issue #18's "Parties" list with real ``pets party`` processes: a
stranger that reaches party 0's port is refused and logged while the real parties
compute; a malformed hello is a ProtocolError; a wrong --parties is named by every
side at once; party 0 leaving during the rendezvous is a PartyError; ``pets party
--provider tfp`` warns. Peer messages are typed JSON: a pickle is refused unread.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from pets.backends.mpc import messages
from pets.backends.mpc.dealer import check_request
from pets.backends.mpc.engine import MPCConfig
from pets.backends.mpc.rendezvous import Hello, read_hello, sign_hello
from pets.errors import AuthenticationError, ParameterError, ProtocolError

ROOT = Path(__file__).resolve().parents[1]
SECRET = "test-run-secret-" + "1" * 16


def _port() -> int:
    from pets.parties import free_port

    return free_port()


def start_party(*argv: str, secret: str | None = SECRET,
                timeout: float = 120.0) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "PETS_RUN_SECRET"}
    if secret is not None:
        env["PETS_RUN_SECRET"] = secret
    command = [sys.executable, "-m", "pets", "party", *argv, "--timeout", str(timeout)]
    if "--dealer" not in argv:
        command.append("tests.test_parties_security:shared_product")
    return subprocess.Popen(command, cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def shared_product(party: object) -> float:
    """Party 0 holds 3, party 1 holds 4; every party learns 12 (the MPC backend, real shares)."""
    import numpy as np

    backend = party.backend  # type: ignore[attr-defined]
    rank = party.rank  # type: ignore[attr-defined]
    a = backend.encrypt(np.array([[3.0]]) if rank == 0 else None, src=0)
    b = backend.encrypt(np.array([[4.0]]) if rank == 1 else None, src=1)
    return float(backend.decrypt(a * b)[0, 0])


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=400)
    finally:
        process.kill()
    return process.returncode, out, err


def intrude(port: int, hello: bytes, stop: threading.Event) -> None:
    """Join party 0's store as a stranger would, as soon as it is up, and post ``hello``."""
    import torch.distributed as dist

    while not stop.is_set():
        try:
            store = dist.TCPStore("127.0.0.1", port, 2, is_master=False,  # type: ignore[attr-defined]
                                  timeout=timedelta(seconds=2), wait_for_workers=False)
            break
        except RuntimeError:
            time.sleep(0.2)
    else:
        return
    place = store.add("pets/joiners", 1)
    store.set(f"pets/joiner/{place}", hello.replace(b"PLACE", str(place).encode()))


def stranger_hello(rank: int) -> bytes:
    """A well-formed hello for ``rank`` signed with a secret that is not the run's."""
    fields = Hello(2, rank, 2, "tfp", 16, "party", 0)
    signed = json.loads(sign_hello(fields, "a-guess-" + "x" * 16, "no-nonce"))
    signed["hello"]["place"] = "PLACE"
    return json.dumps(signed).replace('"PLACE"', "PLACE").encode()


def test_a_stranger_is_refused_and_logged_while_the_real_parties_compute() -> None:
    port = _port()
    common = ("--parties", "2", "--provider", "tfp", "--port", str(port))
    stop = threading.Event()
    stranger = threading.Thread(target=intrude, args=(port, stranger_hello(1), stop))
    first = start_party("--rank", "0", *common)
    stranger.start()
    stranger.join(timeout=400)  # the stranger claims rank 1 before the real party 1 starts
    stop.set()
    second = start_party("--rank", "1", *common)
    (code0, out0, err0), (code1, out1, _) = finish(first), finish(second)
    assert (code0, code1) == (0, 0), err0
    assert "pets party 0: 12.0" in out0 and "pets party 1: 12.0" in out1
    assert re.search(r"party 0 refused a joiner of the rendezvous at 127\.0\.0\.1:\d+: joiner "
                     r"\d+ does not know this run's secret", err0), err0
    assert "InsecureProviderWarning: provider 'tfp' (trusted first party)" in err0


def test_a_malformed_hello_is_a_protocol_error() -> None:
    port = _port()
    stop = threading.Event()
    first = start_party("--rank", "0", "--parties", "2", "--provider", "tfp", "--port",
                        str(port), timeout=15)
    intrude(port, b'{"protocol": 1, "parties": "two"}', stop)
    code, _, err = finish(first)
    assert code == 2
    assert re.search(r"ProtocolError: party 0 waited 15 s at 127\.0\.0\.1:\d+ but party 1 never "
                     r"joined with this run's secret, and 1 joiner\(s\) were refused; the last: "
                     r"joiner \d+ posted a hello of another shape", err), err


def test_a_wrong_party_count_is_named_by_party_0_and_the_dealer() -> None:
    port = str(_port())
    first = start_party("--rank", "0", "--parties", "2", "--port", port, timeout=60)
    dealer = start_party("--dealer", "--parties", "3", "--port", port, timeout=60)
    (code0, _, err0), (code_dealer, _, err_dealer) = finish(first), finish(dealer)
    assert code0 == 2 and code_dealer == 2
    assert "PartyError: the dealer (rank 3) was started for 3 parties, party 0 for 2" in err0
    assert "PartyError: party 0 was started for 2 parties, the dealer (rank 3) for 3" in err_dealer


def test_party_0_leaving_during_the_rendezvous_is_a_party_error() -> None:
    port = str(_port())
    common = ("--parties", "3", "--provider", "tfp", "--port", port)
    first = start_party("--rank", "0", *common, timeout=45)  # gives up waiting for party 2
    second = start_party("--rank", "1", *common, timeout=240)
    (code0, _, err0), (code1, _, err1) = finish(first), finish(second)
    assert code0 == 2 and "party 2 never joined" in err0
    assert code1 == 2
    assert re.search(r"PartyError: party 1 lost party 0's rendezvous at 127\.0\.0\.1:\d+ "
                     r"\(\w+\): party 0 stopped", err1), err1


def test_a_party_without_the_run_secret_is_told_how_to_give_it() -> None:
    with pytest.raises(ParameterError, match=r"a run of 2 parties needs a run secret of at least "
                                             r"16 characters.*--secret-file FILE or set "
                                             r"PETS_RUN_SECRET"):
        MPCConfig(parties=2, rank=0, provider="tfp", port=29500)


# --- what the rendezvous and the communicator read ---------------------------------------


def test_a_hello_signed_with_the_secret_is_read_back() -> None:
    hello = Hello(2, 1, 2, "ttp", 16, "party", 3)
    assert read_hello(sign_hello(hello, SECRET, "n"), SECRET, "n", 3) == hello
    with pytest.raises(AuthenticationError, match="joiner 3 does not know this run's secret"):
        read_hello(sign_hello(hello, SECRET, "other run"), SECRET, "n", 3)
    with pytest.raises(ProtocolError, match="joiner 4 posted the hello of place 3"):
        read_hello(sign_hello(hello, SECRET, "n"), SECRET, "n", 4)


def test_a_pickle_from_a_peer_is_refused_unread() -> None:
    payload = pickle.dumps(torch.nn.Linear(2, 2))  # CrypTen's loader would build this
    with pytest.raises(ProtocolError, match="not pets' typed JSON \\(a pickle, or corrupt"):
        messages.decode(payload)
    with pytest.raises(ProtocolError, match="a Linear cannot be sent between parties"):
        messages.encode(torch.nn.Linear(2, 2))


def test_sizes_from_a_peer_are_bounded() -> None:
    body = json.dumps({"value": {"size": [60000, 60000]}, "blobs": []}).encode()
    with pytest.raises(ProtocolError, match="a size of 3600000000 elements, more than"):
        messages.decode(len(body).to_bytes(4, "big") + body)  # what a peer could forge
    lying = json.dumps({"value": {"bytes": 0}, "blobs": [2**40]}).encode()
    with pytest.raises(ProtocolError, match="whose parts do not add up to its length"):
        messages.decode(len(lying).to_bytes(4, "big") + lying)


@pytest.mark.parametrize("request_", [
    {"function": "eval", "device": None, "args": (torch.Size([2]),), "kwargs": {}},
    {"function": "additive", "device": None,
     "args": (torch.Size([2]), torch.Size([2]), "save"), "kwargs": {}},
    {"function": "square", "device": "cpu", "args": (torch.Size([2]),),
     "kwargs": {"generator": "x"}},
])
def test_the_dealer_refuses_requests_it_does_not_serve(request_: dict[str, object]) -> None:
    with pytest.raises(ProtocolError, match="the dealer got a"):
        check_request(request_)


def test_the_dealer_reads_a_real_triple_request() -> None:
    request_ = {"function": "additive", "device": None,
                "args": (torch.Size([2, 3]), torch.Size([3, 4]), "matmul"), "kwargs": {}}
    assert check_request(messages.decode(messages.encode(request_)))[0] == "additive"


# --- the channel between parties ---------------------------------------------------------------


def _link() -> tuple[object, object]:
    from pets.backends.mpc.channel import Channel

    return (Channel(secret=SECRET, nonce="run", rank=0),
            Channel(secret=SECRET, nonce="run", rank=1))


def test_a_sealed_message_opens_only_in_order_and_unaltered() -> None:
    from pets.backends.mpc.channel import TAG_BYTES

    sender, receiver = _link()
    shares = torch.arange(6, dtype=torch.int64).reshape(2, 3)
    first, second = sender.seal(shares, 1), sender.seal(shares * 2, 1)  # type: ignore[attr-defined]
    assert first.numel() == shares.numel() * 8 + TAG_BYTES
    assert not torch.equal(first, second)  # the same plaintext never looks the same
    into = torch.empty(2, 3, dtype=torch.int64)
    buffer, number = receiver.expect(into, 0)  # type: ignore[attr-defined]
    buffer.copy_(second)  # the second message where the first belongs: reordered or replayed
    with pytest.raises(AuthenticationError, match="a message from party 0 failed authentication"):
        receiver.open(buffer, number, into, 0, "party 0")  # type: ignore[attr-defined]
    altered = first.clone()
    altered[3] ^= 1
    with pytest.raises(AuthenticationError, match="altered on the way, replayed"):
        receiver.open(altered, number, into, 0, "party 0")  # type: ignore[attr-defined]
    receiver.open(first, number, into, 0, "party 0")  # type: ignore[attr-defined]
    assert torch.equal(into, shares)


def test_another_run_with_the_same_secret_has_other_keys() -> None:
    from pets.backends.mpc.channel import Channel

    sender = Channel(secret=SECRET, nonce="run 1", rank=0)
    receiver = Channel(secret=SECRET, nonce="run 2", rank=1)
    into = torch.empty(4, dtype=torch.int64)
    _, number = receiver.expect(into, 0)
    with pytest.raises(AuthenticationError):
        receiver.open(sender.seal(torch.ones(4, dtype=torch.int64), 1), number, into, 0, "p0")
