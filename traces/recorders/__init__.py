"""Floor 3, the recorders: the hooks, modes and trace functions that watch a run and fill
in a ``Trace`` (graph, backward, ops, modules, source), the ``Tracer`` that starts and stops
them, and ``traces.record()`` for any code.
"""
