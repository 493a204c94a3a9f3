"""The check every pytest-benchmark function makes before it is timed: its result against
plaintext's, within a stated tolerance (a wrong result must not be reported as a fast one).

>>> import numpy as np
>>> round(assert_close(np.array([1.0, 2.0005]), np.array([1.0, 2.0]), 1e-3, "example"), 6)
0.0005
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["assert_close", "decrypt_columns"]


def assert_close(result: Any, reference: Any, tolerance: float, what: str) -> float:
    """Fail unless ``result`` is within ``tolerance`` of plaintext's ``reference`` (largest
    absolute difference); return that difference."""
    result = np.asarray(result, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64).reshape(result.shape)
    error = float(np.abs(result - reference).max())
    assert error <= tolerance, (f"{what}: largest difference from plaintext {error:.3g}, "
                                f"more than the stated tolerance {tolerance:g}; not timed")
    return error


def decrypt_columns(keys: Any, columns: list[Any], rows: int) -> np.ndarray:
    """Raw SEAL ciphertexts of a batched packing (one per output column) as ``rows x cols``."""
    import tenseal.sealapi as sealapi

    out = []
    for ct in columns:
        plain = sealapi.Plaintext()
        keys.decryptor.decrypt(ct, plain)
        out.append(np.asarray(keys.encoder.decode_double(plain))[:rows])
    return np.stack(out, axis=1)
