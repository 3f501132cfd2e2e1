"""Floor 3, beside the recorders: torch's autograd engine mirrored in readable Python, to step
through backward node by node (see ``engine.py``).
"""
