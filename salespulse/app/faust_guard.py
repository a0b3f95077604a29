"""Import faust without letting it read the command line or change the environment.

On its first import, ``faust/__init__.py`` looks through ``sys.argv`` for ``--datadir``,
``-L`` and ``--loop`` (meant for ``python some_faust_app.py``), reads ``FAUST_*``/``F_*``
variables, writes ``FAUST_DATADIR``/``FAUST_LOOP`` back into ``os.environ`` and may switch
the event loop implementation; ``faust.types._env`` takes defaults from the same
variables. SalesPulse's command line and its ``SALESPULSE_*`` settings are its own: faust is
imported inside :func:`hidden_from_faust` (by ``faust_app``, the one module that imports
it first), so that none of this happens.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# The prefixes faust reads its import-time options under (faust/types/_env.py PREFICES).
FAUST_ENV_PREFIXES = ("FAUST_", "F_")


@contextmanager
def hidden_from_faust() -> Iterator[None]:
    """While faust is imported: an argv of the program name only, no FAUST_*/F_* variables.

    Both are given back exactly afterwards, and anything faust added to the environment
    is removed again.
    """
    argv = sys.argv
    hidden = {name: os.environ[name] for name in os.environ if name.startswith(FAUST_ENV_PREFIXES)}
    for name in hidden:
        del os.environ[name]
    before = dict(os.environ)
    sys.argv = argv[:1]
    try:
        yield
    finally:
        sys.argv = argv
        for name in set(os.environ) - set(before):
            del os.environ[name]
        for name, value in before.items():
            if os.environ.get(name) != value:
                os.environ[name] = value
        os.environ.update(hidden)
