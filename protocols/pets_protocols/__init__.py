"""Multi-party programs built only on the public pets API; each party a real process.

* :mod:`pets_protocols.service` — encrypted inference over HTTP: a server with the
  model and public keys, a client with the secret key (``pets serve`` / ``pets infer``).
"""
