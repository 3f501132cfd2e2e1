"""Floor 2, the plain data of a run: tensor and autograd-node descriptions, and the ``Trace``
with the records it holds. Imports only the floors below.
"""
