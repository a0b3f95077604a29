"""Composition: wires the three sides into processes (runtime, the faust app, embedded
broker and Redis, demo traffic, health). The serving path: it never imports ``dev``."""
