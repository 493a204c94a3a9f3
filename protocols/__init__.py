"""Multi-party programs built only on the public pets API; each party a real process.

* :mod:`protocols.inference_service` — encrypted inference: a server with the
  model and public keys, a client with the secret key (``pets serve`` / ``pets infer``).
* :mod:`protocols.transport` — framed TCP with limits, timeouts and byte counting.
"""
