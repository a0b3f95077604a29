"""Composition: wires the three sides into processes (runtime, the faust app, embedded
broker and Redis, demo traffic, health). The serving path: it never imports ``dev``.

faust_app is imported first, whichever module of this package is asked for: it is where
faust is imported without reading ``sys.argv`` or changing ``os.environ`` (faust_guard
says why), and that only holds if no module imports faust before it.
"""

from salespulse.app import faust_app as faust_app
