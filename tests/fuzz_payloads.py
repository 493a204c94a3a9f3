"""Payloads for the fuzzing suite: valid pets bytes, then mutated, deterministically.

Shared by the Hypothesis tests (``tests/test_fuzz_*.py``, which drive the
mutations with a Hypothesis-controlled ``random.Random``) and by the subprocess
campaign (``tests/test_fuzz_subprocess.py``), which runs this file as a worker:

    python tests/fuzz_payloads.py LOADER SEED START COUNT BASEDIR

The worker builds payload ``i`` from ``random.Random(f"{SEED}:{i}")`` alone, feeds it
to the loader and prints one line per payload, ``i<TAB>outcome<TAB>detail``, where
outcome is ``loaded``, ``refused`` (a ``pets.PetsError``) or ``error`` (anything
else). A crash or hang shows as a missing line, which the parent attributes to
the payload it was on. Every mutation is a function of the random generator, so
``(loader, seed, i)`` reproduces a payload exactly.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import random
import signal
import struct
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

_PREFIX = struct.Struct(">4sHI")
_DIGEST = 32
_SEAL_HEADER = struct.Struct("<HBBBBHQ")

#: integers and other values that break naive parsers
INTERESTING: list[Any] = [
    0, 1, -1, 2, 7, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1,
    2**63, 2**64, -(2**63), 10**30, 10**400, 0.5, -0.0, 1e-300, 1e300, -1e300, 3.0,
    True, False, None, "", "x", "plain", "ckks", "mpc", "tensor", "backend", "\u0000", "é" * 300,
    [], [0], [1, 1], [10**12, 10**12], [-1], [[1]], {}, {"a": 1},
]
#: JSON tokens json.dumps will not write but a forger can
RAW_TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"9" * 5000]


# ---- building envelopes by hand (no validation: a forger's view) ---------------------------


def split(data: bytes) -> tuple[bytes, int, dict[str, Any], list[bytes]]:
    """``(magic, version, header, blobs)`` of valid pets bytes (trusted input only)."""
    magic, version, length = _PREFIX.unpack_from(data)
    header = json.loads(data[_PREFIX.size : _PREFIX.size + length])
    offset = _PREFIX.size + length
    blobs = []
    for n in header["blobs"]:
        blobs.append(data[offset : offset + n])
        offset += n
    return magic, version, header, blobs


def raw_pack(
    magic: bytes,
    version: int,
    header: bytes,
    blobs: list[bytes],
    *,
    header_length: int | None = None,
    key: bytes | None = None,
) -> bytes:
    """Bytes laid out like an envelope, with a valid trailer over whatever they hold."""
    length = len(header) if header_length is None else header_length
    body = b"".join([_PREFIX.pack(magic, version & 0xFFFF, length & 0xFFFFFFFF), header, *blobs])
    trailer = (
        hashlib.sha256(body).digest()
        if key is None
        else hmac.new(key, body, hashlib.sha256).digest()
    )
    return body + trailer


def resum(data: bytes, key: bytes | None = None) -> bytes:
    """``data`` with its trailer recomputed: what anyone can do to checksummed bytes."""
    body = data[:-_DIGEST] if len(data) >= _DIGEST else data
    trailer = (
        hashlib.sha256(body).digest()
        if key is None
        else hmac.new(key, body, hashlib.sha256).digest()
    )
    return body + trailer


# ---- mutations -------------------------------------------------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a JSON value, the root included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value[:16]):
            found += _paths(child, (*prefix, index))
    return found


def mutate_json(value: Any, rng: random.Random) -> Any:
    """A copy of ``value`` with one node replaced, deleted or grown."""
    value = json.loads(json.dumps(value))
    paths = _paths(value)
    path = rng.choice(paths)
    replacement = rng.choice(INTERESTING)
    if not path:
        return replacement if rng.random() < 0.3 else value
    parent = value
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    action = rng.randrange(4)
    if action == 0 and isinstance(parent, dict):
        del parent[last]
    elif action == 1 and isinstance(parent, list):
        parent.insert(last, replacement)
    elif action == 2 and isinstance(parent, dict):
        parent[f"extra{rng.randrange(3)}"] = replacement
    else:
        parent[last] = replacement
    return value


def _dumps(value: Any, rng: random.Random) -> bytes:
    text = json.dumps(value, sort_keys=True).encode()
    if rng.random() < 0.15:  # smuggle a token json.dumps would never write
        numbers = [i for i, c in enumerate(text) if chr(c).isdigit()]
        if numbers:
            at = rng.choice(numbers)
            end = at
            while end < len(text) and chr(text[end]).isdigit():
                end += 1
            text = text[:at] + rng.choice(RAW_TOKENS) + text[end:]
    if rng.random() < 0.05:
        depth = rng.choice([50, 1000, 200_000])
        text = text[:-1] + b',"deep":' + b"[" * depth + b"]" * depth + b"}"
    return text


def mutate_envelope(data: bytes, rng: random.Random, *, key: bytes | None = None) -> bytes:
    """One random mutation of valid envelope bytes ``data``."""
    magic, version, header, blobs = split(data)
    choice = rng.randrange(12)
    if choice == 0:  # truncation
        return data[: rng.randrange(len(data))]
    if choice == 1:  # bit flips, trailer left as it was
        return _flip(data, rng)
    if choice == 2:  # bit flips with a recomputed trailer (a forger's edit)
        return resum(_flip(data, rng), key)
    if choice == 3:  # a forged header
        forged = mutate_json(header, rng)
        return raw_pack(magic, version, _dumps(forged, rng), blobs, key=key)
    if choice == 4:  # absurd or off-by-some header length
        header_bytes = json.dumps(header, sort_keys=True).encode()
        length = rng.choice([0, 1, len(header_bytes) - 1, len(header_bytes) + 1, 2**20 + 1,
                             2**31, 2**32 - 1, rng.randrange(2**32)])
        return raw_pack(magic, version, header_bytes, blobs, header_length=length, key=key)
    if choice == 5 and blobs:  # blob lengths that lie
        forged = dict(header)
        lengths = list(header["blobs"])
        index = rng.randrange(len(lengths))
        lengths[index] = rng.choice([0, -1, lengths[index] + 1, lengths[index] - 1, 2**62, 10**400])
        forged["blobs"] = lengths
        return raw_pack(magic, version, _dumps(forged, rng), blobs, key=key)
    if choice == 6 and blobs:  # a blob's body edited (reaches the engine's parser)
        index = rng.randrange(len(blobs))
        blobs = list(blobs)
        blobs[index] = _flip(blobs[index], rng) if blobs[index] else b"\xff"
        return raw_pack(magic, version, json.dumps(header, sort_keys=True).encode(), blobs, key=key)
    sized = [i for i, blob in enumerate(blobs) if len(blob) >= _SEAL_HEADER.size]
    if choice == 7 and sized:  # a SEAL header that lies
        index = rng.choice(sized)
        blobs = list(blobs)
        blobs[index] = _forge_seal_header(blobs[index], rng)
        return raw_pack(magic, version, json.dumps(header, sort_keys=True).encode(), blobs, key=key)
    if choice == 8 and blobs:  # blobs truncated, dropped or duplicated, header adjusted
        blobs = list(blobs)
        index = rng.randrange(len(blobs))
        action = rng.randrange(3)
        if action == 0:
            blobs[index] = blobs[index][: rng.randrange(len(blobs[index]) + 1)]
        elif action == 1:
            del blobs[index]
        else:
            blobs.insert(index, blobs[index])
        forged = dict(header, blobs=[len(b) for b in blobs])
        return raw_pack(magic, version, json.dumps(forged, sort_keys=True).encode(), blobs, key=key)
    if choice == 9:  # another version or magic
        return raw_pack(rng.choice([b"PETS", b"PETA", b"PETX", magic]), rng.choice([0, 2, 65535]),
                        json.dumps(header, sort_keys=True).encode(), blobs, key=key)
    if choice == 10:  # random bytes after a valid prefix
        return data[: _PREFIX.size] + rng.randbytes(rng.randrange(0, 256))
    return rng.randbytes(rng.randrange(0, 64))  # not pets data at all


def _flip(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    mutable = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 8])):
        mutable[rng.randrange(len(mutable))] ^= 1 << rng.randrange(8)
    return bytes(mutable)


def _forge_seal_header(blob: bytes, rng: random.Random) -> bytes:
    magic, size, major, minor, compression, reserved, length = _SEAL_HEADER.unpack_from(blob)
    field = rng.randrange(5)
    if field == 0:
        length = rng.choice([0, 1, length - 1, length + 1, 2**63, 2**64 - 1])
    elif field == 1:
        major = rng.choice([0, 3, 5, 255])
    elif field == 2:
        compression = rng.choice([1, 2, 3, 255])
    elif field == 3:
        size = rng.choice([0, 15, 17, 255])
    else:
        magic = rng.choice([0, 0xA15F, 0xFFFF])
    header = _SEAL_HEADER.pack(magic, size, major, minor, compression, reserved,
                               length % 2**64)
    return header + blob[_SEAL_HEADER.size :]


# ---- budget files ----------------------------------------------------------------------------


def mutate_budget(text: str, rng: random.Random) -> bytes:
    """One random mutation of a valid budget file's text."""
    choice = rng.randrange(6)
    raw = text.encode()
    if choice == 0:
        return raw[: rng.randrange(len(raw))]
    if choice == 1:
        return _flip(raw, rng)
    if choice in (2, 3, 4):  # a forged content with its checksum recomputed
        document = json.loads(text)
        content = mutate_json(document["content"], rng)
        if choice == 4 and isinstance(content, dict) and isinstance(content.get("ledger"), list):
            content["ledger"] = [mutate_json(entry, rng) for entry in content["ledger"]]
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
        document["content"] = content
        document["sha256"] = hashlib.sha256(canonical.encode()).hexdigest()
        return _dumps(document, rng) if choice == 3 else json.dumps(document).encode()
    if choice == 5:
        document = json.loads(text)
        return json.dumps(mutate_json(document, rng)).encode()
    return rng.randbytes(rng.randrange(64))


# ---- what parties send each other: rendezvous hellos and communicator messages -------------

RUN_SECRET = "fuzz-run-secret-" + "0" * 16
RUN_NONCE = "0f" * 16


def mutate_hello(rng: random.Random) -> bytes:
    """A rendezvous hello for place 1, mutated: forged fields signed with the run's secret
    (an insider's bad hello), unsigned edits (a stranger's), or raw damage."""
    from pets.backends.mpc.rendezvous import Hello, sign_hello

    hello = Hello(2, 1, 2, "ttp", 16, "party", 1)
    signed = sign_hello(hello, RUN_SECRET, RUN_NONCE)
    choice = rng.randrange(5)
    if choice == 0:  # forged fields, correctly signed: must be a ProtocolError, never a crash
        fields = mutate_json(json.loads(signed)["hello"], rng)
        try:
            signed_fields = json.loads(sign_hello(hello, RUN_SECRET, RUN_NONCE))
            from pets.backends.mpc.rendezvous import _mac

            signed_fields["hello"] = fields
            signed_fields["mac"] = _mac(RUN_SECRET, fields, RUN_NONCE)
        except (TypeError, ValueError):
            return _dumps(fields, rng)
        return _dumps(signed_fields, rng)
    if choice == 1:  # the envelope edited, mac left as it was (a stranger)
        return _dumps(mutate_json(json.loads(signed), rng), rng)
    if choice == 2:
        return _flip(signed, rng)
    if choice == 3:
        return signed[: rng.randrange(len(signed))]
    return rng.randbytes(rng.randrange(0, 256))


def mutate_message(rng: random.Random) -> tuple[str, Any]:
    """A peer's object message (``("object", bytes)``) or frame header (``("header", ints)``)."""
    import pickle

    import torch

    from pets.backends.mpc import messages

    choice = rng.randrange(6)
    if choice == 5:  # a frame header with some slots replaced
        header = [0x7065747301, 7, 0, 1, 1, 1, rng.choice([0, 5, 200]), 0, 0, 0, 0, 0, 0, 0, 0, 0]
        for _ in range(rng.choice([1, 2, 4])):
            header[rng.randrange(16)] = rng.choice(
                [v for v in INTERESTING if isinstance(v, int) and not isinstance(v, bool)
                 and -(2**63) <= v < 2**63])
        return "header", header
    request = {"function": rng.choice(["additive", "square", "binary", "wraps", "B2A"]),
               "device": None, "kwargs": {},
               "args": (torch.Size([2, 3]), torch.Size([3, 4]), "matmul")}
    if rng.random() < 0.2:  # an HE party's message: blobs after the JSON
        request["args"] = ([b"\x00" * rng.randrange(64), b"key"],)
    base = messages.encode(request)
    length = int.from_bytes(base[:4], "big")
    top, blobs = json.loads(base[4:4 + length]), base[4 + length:]
    if choice == 0:  # the JSON forged (values, blob lengths), the prefix made to fit
        body = _dumps(mutate_json(top, rng), rng)
        return "object", len(body).to_bytes(4, "big") + body + blobs
    if choice == 1:
        return "object", _flip(base, rng)
    if choice == 2:
        return "object", base[: rng.randrange(len(base))]
    if choice == 3:  # what CrypTen's pickle-based communicator used to accept
        return "object", pickle.dumps(rng.choice([request, torch.Size([60000, 60000]),
                                                  torch.nn.Linear(2, 2), [1, (2, 3)]]))
    return "object", rng.randbytes(rng.randrange(0, 128))


# ---- loaders (the worker's side) ------------------------------------------------------------


def _quiet_backend(name: str, **options: Any) -> Any:
    import pets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pets.backend(name, **options)


def make_bases(folder: Path) -> None:
    """Write the valid objects every campaign mutates (and the keys to load tensors under)."""
    import numpy as np

    from pets.dp import Budget, GaussianMechanism

    folder.mkdir(parents=True, exist_ok=True)
    values = np.linspace(-1, 1, 6).reshape(2, 3)
    for name, options in [("plain", {}), ("ckks", {"depth": 1}), ("mpc", {})]:
        backend = _quiet_backend(name, **options)
        tensor = backend.encrypt(values)
        (folder / f"{name}-keys.bin").write_bytes(backend.to_bytes(include_secret_key=True))
        (folder / f"{name}-backend.bin").write_bytes(
            backend.public().to_bytes() if name == "ckks" else backend.to_bytes()
        )
        (folder / f"{name}-tensor.bin").write_bytes(tensor.to_bytes())
        if name == "ckks":
            batched = backend.encrypt(values, layout="batched")
            (folder / "ckks-tensor-batched.bin").write_bytes(batched.to_bytes())
    budget = Budget(epsilon=5.0, delta=1e-5, composition="rdp")
    budget.spend(0.5, label="count")
    budget.spend_mechanism(GaussianMechanism(1.0, 1e-6, 1.0))
    budget.spend_gaussian(1.1, delta=1e-5, steps=100, sampling_rate=0.01)
    budget.save(folder / "budget.json")


Loader = Callable[[random.Random], str]


def make_loader(name: str, folder: Path) -> Loader:
    """A function that builds one payload from a generator, loads it, and describes the result."""
    import pets
    from pets.serialization import unpack

    def envelope_loader(base: bytes, load: Callable[[bytes], Any]) -> Loader:
        def run(rng: random.Random) -> str:
            result = load(mutate_envelope(base, rng))
            return type(result).__name__

        return run

    if name == "budget":
        text = (folder / "budget.json").read_text()
        target = folder / f"budget-{os.getpid()}.json"

        def run_budget(rng: random.Random) -> str:
            target.write_bytes(mutate_budget(text, rng))
            return repr(pets.dp.Budget.load(target).spent)

        return run_budget
    if name == "hello":
        from pets.backends.mpc.rendezvous import read_hello

        def run_hello(rng: random.Random) -> str:
            return repr(read_hello(mutate_hello(rng), RUN_SECRET, RUN_NONCE, 1))[:60]

        return run_hello
    if name == "mpc-message":
        from pets.backends.mpc import messages
        from pets.backends.mpc.communicator import PartyCommunicator
        from pets.backends.mpc.dealer import check_request

        comm = PartyCommunicator(rank=0, parties=1, dealer=None, timeout=1.0)

        def run_message(rng: random.Random) -> str:
            import torch

            kind, payload = mutate_message(rng)
            if kind == "header":  # what a receiver checks before it allocates anything
                header = torch.tensor(payload, dtype=torch.int64)
                expected = rng.choice([None, [(2, 3)]])
                shapes = comm._check(header, 1, "send_obj", 0, expected)
                total = sum(math.prod(shape) for shape in shapes)
                if total > messages.MAX_ELEMENTS:
                    raise AssertionError(f"a header got {total} elements past the checks")
                return f"shapes {shapes}"
            obj = messages.decode(payload)
            if isinstance(obj, dict):  # what the dealer does with a request
                check_request(obj)
            return type(obj).__name__

        return run_message
    if name == "envelope":
        bases = [(folder / f).read_bytes() for f in ("plain-tensor.bin", "mpc-backend.bin")]

        def run_envelope(rng: random.Random) -> str:
            base = rng.choice(bases)
            kind = "tensor" if base is bases[0] else "backend"
            return repr(unpack(mutate_envelope(base, rng), kind=kind).meta)[:60]

        return run_envelope
    engine, what = name.split("-", 1)
    if what == "backend":
        base = (folder / f"{engine}-backend.bin").read_bytes()

        def load_backend(data: bytes) -> Any:
            backend = pets.load_backend(data)
            backend.encrypt([[0.5, -0.5]])  # keys that load must also work
            return backend

        return envelope_loader(base, load_backend)
    if engine == "mpc":  # an mpc backend loads only inside its run: make one and its tensor here
        import numpy as np

        keys = _quiet_backend("mpc")
        bases = [keys.encrypt(np.linspace(-1, 1, 6).reshape(2, 3)).to_bytes()]
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            keys = pets.load_backend((folder / f"{engine}-keys.bin").read_bytes())
        bases = [(folder / f"{engine}-tensor.bin").read_bytes()]
    if engine == "ckks":
        bases.append((folder / "ckks-tensor-batched.bin").read_bytes())

    def load_tensor(rng: random.Random) -> str:
        tensor = pets.load_tensor(mutate_envelope(rng.choice(bases), rng), keys)
        keys.decrypt(tensor)  # ciphertexts that load must also decrypt
        return f"shape {tensor.shape}"

    return load_tensor


LOADERS = ("envelope", "plain-backend", "plain-tensor", "ckks-backend", "ckks-tensor",
           "mpc-backend", "mpc-tensor", "budget", "hello", "mpc-message")


def _selftest(rng: random.Random) -> str:
    """The harness's own test: loads, refuses, crashes (payload 3), hangs (5), errs (7)."""
    import pets

    index = rng.index  # type: ignore[attr-defined]
    if index == 3:
        os.kill(os.getpid(), signal.SIGSEGV)
    if index == 5:
        time.sleep(3600)
    if index == 7:
        raise KeyError("not a pets error")
    if index % 2:
        raise pets.SerializationError("refused")
    return "loaded"


def work(loader: str, seed: int, start: int, count: int, folder: Path) -> None:
    """The worker: payloads ``start .. start + count - 1``, one result line each."""
    import pets

    warnings.simplefilter("ignore")
    run = _selftest if loader == "selftest" else make_loader(loader, folder)
    for index in range(start, start + count):
        rng = random.Random(f"{seed}:{index}")
        rng.index = index  # type: ignore[attr-defined]  # read by the selftest only
        try:
            outcome, detail = "loaded", run(rng)
        except pets.PetsError as exc:
            outcome, detail = "refused", type(exc).__name__
        except Exception as exc:  # what the suite exists to find
            last = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{Path(last.filename).name}:{last.lineno}"
            outcome, detail = "error", f"{type(exc).__name__} at {where}: {exc}"[:300]
        detail = " ".join(detail.split())
        print(f"{index}\t{outcome}\t{detail}", flush=True)


if __name__ == "__main__":
    name, seed_text, start_text, count_text, base_dir = sys.argv[1:6]
    work(name, int(seed_text), int(start_text), int(count_text), Path(base_dir))
