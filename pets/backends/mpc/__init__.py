"""The "mpc" backend: secure multi-party computation on CrypTen (filled in by the backend's author)."""
