"""Every message between two processes of a run, encrypted and authenticated (ChaCha20-Poly1305).

gloo sends tensors over plain TCP. Unencrypted, a network observer of the links
sees far more than random shares: CrypTen's pairwise PRNG seeds and the dealer's
seeds travel at set-up, and with them every mask and triple, so the opened
Beaver values and the revealed shares give away the data. So each message the
pets communicator hands to gloo is sealed here first: ChaCha20-Poly1305 (the
``cryptography`` package, OpenSSL underneath) under a key per direction
(``src -> dst``), derived with HMAC-SHA256 from the run secret and the run nonce
party 0 drew at the rendezvous, with the message's number on that link as the
nonce. The receiver knows the size and number of every message it expects, so a
sealed message is the plaintext plus a 16-byte tag; a tampered, replayed,
reordered or foreign message fails its tag and is an
:class:`~pets.errors.AuthenticationError`. What stays visible: who talks to
whom, when, and each message's length (the protocol's shape and timing).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import defaultdict
from typing import Any

import torch

from pets.errors import AuthenticationError, BackendNotInstalledError

__all__ = ["TAG_BYTES", "Channel"]

#: Bytes the authentication tag adds to every message.
TAG_BYTES = 16


def _aead() -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    except ImportError as exc:  # pragma: no cover - an install without the mpc extra
        raise BackendNotInstalledError(
            "encrypting the links between parties needs the 'cryptography' package; install "
            "it with: pip install 'pets[mpc]'"
        ) from exc
    return ChaCha20Poly1305


def _as_bytes(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's memory as a flat uint8 tensor (no copy when contiguous)."""
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8)


class Channel:
    """Seals what this process (``rank``) sends and opens what it receives, link by link."""

    def __init__(self, *, secret: str, nonce: str, rank: int) -> None:
        self.rank = rank
        self._root = hmac.new(secret.encode(), f"pets channel {nonce}".encode(),
                              hashlib.sha256).digest()
        self._ciphers: dict[tuple[int, int], Any] = {}
        self._sent: defaultdict[int, int] = defaultdict(int)
        self._received: defaultdict[int, int] = defaultdict(int)

    def _cipher(self, src: int, dst: int) -> Any:
        if (src, dst) not in self._ciphers:
            key = hmac.new(self._root, f"{src}->{dst}".encode(), hashlib.sha256).digest()
            self._ciphers[src, dst] = _aead()(key)
        return self._ciphers[src, dst]

    def seal(self, tensor: torch.Tensor, peer: int) -> torch.Tensor:
        """``tensor`` encrypted for ``peer`` as the next message on this link (uint8)."""
        number = self._sent[peer]
        self._sent[peer] += 1
        plain = _as_bytes(tensor)
        wire = torch.empty(plain.numel() + TAG_BYTES, dtype=torch.uint8)
        self._cipher(self.rank, peer).encrypt_into(number.to_bytes(12, "little"), plain.numpy(),
                                                   None, wire.numpy())
        return wire

    def expect(self, tensor: torch.Tensor, peer: int) -> tuple[torch.Tensor, int]:
        """A buffer for the next message from ``peer`` that will fill ``tensor``, and its
        number on the link (taken now, in the order the receives are posted)."""
        number = self._received[peer]
        self._received[peer] += 1
        size = tensor.numel() * tensor.element_size() + TAG_BYTES
        return torch.empty(size, dtype=torch.uint8), number

    def open(self, buffer: torch.Tensor, number: int, into: torch.Tensor, peer: int,
             describe: str) -> None:
        """Check and decrypt message ``number`` from ``peer`` into ``into`` (contiguous: the
        communicator receives only into tensors it allocated, or gloo's own targets)."""
        from cryptography.exceptions import InvalidTag

        target = _as_bytes(into)
        try:  # straight into the tensor; on a bad tag the run stops and nothing of it is used
            self._cipher(peer, self.rank).decrypt_into(
                number.to_bytes(12, "little"), buffer.numpy(), None, target.numpy())
        except InvalidTag:
            raise AuthenticationError(
                f"a message from {describe} failed authentication: it was altered on the way, "
                "replayed, or not sent by that party of this run; nothing of it was used"
            ) from None
