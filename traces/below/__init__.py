"""Floor 1, below Python: what torch says about itself under the Python surface, read offline.

Everything here comes from the installed wheel; nothing is fetched. One room
per subject, each importing only the rooms listed before it (and ``traces.basics``,
the floor below):

- ``links``: the commit torch was built from (``torch.version.git_version``)
  and GitHub links at it; files generated at build time named as such.
- ``schema``: ``native_functions.yaml``, ATen's schema: each operator's entry
  and the kernel it names per dispatch key.
- ``nodes``: where each autograd node comes from: its ``derivatives.yaml``
  entry, or C++ written by hand (``AccumulateGrad``, ``CopySlices``, ...).
- ``cache``: the index of the installed torch (the two yaml files, read once
  with torchgen, and the C++ nodes' headers), cached per torch version; the
  cache is read as untrusted input.
- ``formulas``: the derivative formulas of a node, written as equations with a
  trace's names and numbers.
- ``frames``: C++ frames captured with ``CapturedTraceback``, grouped into layers.
- ``dispatcher``: the live dispatcher (``torch._C._dispatch_dump_table``):
  which kernels a call went through, and each operator's first call.

``python -m traces.gdb``, which stops in an operator's C++ kernel, is a command on
the package's face (``traces/gdb.py``) that uses these rooms.
"""
