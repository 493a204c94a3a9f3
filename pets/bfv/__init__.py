"""BFV, the exact HE scheme, for two-party protocols: oblivious products and masked shares.

Built on the SEAL bindings TenSEAL ships (``tenseal.sealapi``). Not a pets
backend of its own: the MPC provider ``"he"`` makes Beaver triples with it
(:mod:`pets.backends.mpc.he_triples`) and the ``"hybrid"`` backend runs its
linear layers with it. Modules: :mod:`~pets.bfv.parameters` (sets and the
noise each floods), :mod:`~pets.bfv.randomness` (wide uniform integers),
:mod:`~pets.bfv.scheme` (keys, query, response, decryption),
:mod:`~pets.bfv.ole` (the two-party products over a channel).
"""
