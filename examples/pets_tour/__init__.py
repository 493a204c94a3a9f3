"""The tour behind ``pets demo``: every technique in turn, each with its cost measured.

An application on the public pets API (the library never imports it);
``pets demo`` dispatches here.
"""

from pets_tour.tour import run_tour

__all__ = ["run_tour"]
