"""torch-stepthrough's debugger extension: tensors and autograd nodes in VSCode's
Variables pane, answers without Nagle's delay, F11 that steps past the tracer.

debugpy's engine (pydevd) imports every module named ``pydevd_plugin_*`` in the
``pydevd_plugins.extensions`` namespace package when it starts, in every process
it debugs (see pydevd's ``_pydevd_bundle/pydevd_extension_utils.py``); installing
this project puts this folder on that namespace. The classes below implement
pydevd's extension API (``_pydevd_bundle/pydevd_extension_api.py``) and only
delegate: ``stepthrough_variables`` says what to show, ``stepthrough_session``
changes the connection and stepping.

Any error inside falls back to what stock debugpy does: a provider that raises
returns nothing and pydevd uses its own. ``STEPTHROUGH_STOCK_DEBUGGER=1`` in the
environment turns the whole extension off (stock debugpy, to compare).
"""

from __future__ import annotations

import sys

from _pydevd_bundle.pydevd_extension_api import DebuggerEventHandler, StrPresentationProvider, TypeResolveProvider

from . import stepthrough_session, stepthrough_variables

__all__ = ["TensorLines", "TensorChildren", "StepthroughSetup"]

ENABLED = not stepthrough_session.turned_on(stepthrough_session.STOCK_VARIABLE)


class TensorLines(StrPresentationProvider):
    """The one-line value of a tensor, an autograd node, or a container of tensors
    (Variables, hover, Watch). The Debug Console (``repl``) and Copy Value
    (``clipboard``) get the full repr, as with stock debugpy: what a user pastes is
    the values. Never torch's repr of a tensor whose storage was freed: it would
    read memory that is gone and crash the program."""

    def can_provide(self, type_object, type_name) -> bool:
        try:
            return ENABLED and stepthrough_variables.has_one_line(type_object)
        except Exception:
            return False

    def get_str_in_context(self, val, context: str):
        if context in ("repl", "clipboard"):
            try:
                if stepthrough_variables.repr_is_safe(val):
                    return None  # pydevd's full repr, as ever
            except Exception:
                pass
        return self.get_str(val)

    def get_str(self, val):
        try:
            return stepthrough_variables.one_line(val)
        except Exception:
            pass
        try:
            if not stepthrough_variables.repr_is_safe(val):
                return f"{type(val).__name__} (its storage is freed: not shown)"
        except Exception:
            pass
        return None  # pydevd shows its own repr


class TensorChildren(TypeResolveProvider):
    """What a tensor or autograd node expands to, in the order that matters."""

    def can_provide(self, type_object, type_name) -> bool:
        try:
            return ENABLED and stepthrough_variables.has_children(type_object)
        except Exception:
            return False

    def get_contents_debug_adapter_protocol(self, obj, fmt=None):
        try:
            return stepthrough_variables.children(obj)
        except Exception:
            return _stock_resolver().get_contents_debug_adapter_protocol(_stock_target(obj), fmt=fmt)

    def get_dictionary(self, obj):
        try:
            return {name: value for name, value, _ in stepthrough_variables.children(obj)}
        except Exception:
            return _stock_resolver().get_dictionary(_stock_target(obj))

    def resolve(self, var, attribute):
        try:
            for name, value, _ in stepthrough_variables.children(var):
                if name == attribute:
                    return value
        except Exception:
            pass
        return _stock_resolver().resolve(_stock_target(var), attribute)


class StepthroughSetup(DebuggerEventHandler):
    """Runs once pydevd has loaded, before it connects to the adapter."""

    def on_debugger_modules_loaded(self, **kwargs) -> None:
        if not ENABLED:
            return
        try:
            stepthrough_variables.load_library_if_torch_is_here()
        except Exception:
            pass  # loaded on the first tensor shown instead
        try:
            stepthrough_session.answer_at_once(sys.modules["pydevd"].PyDB)
        except Exception:
            pass  # pydevd changed: answer as fast as debugpy does
        try:
            from _pydevd_bundle import pydevd_constants, pydevd_dont_trace

            per_frame = not getattr(pydevd_constants, "PYDEVD_USE_SYS_MONITORING", False)
            stepthrough_session.step_past_tracer(pydevd_dont_trace, per_frame=per_frame)
        except Exception:
            pass  # pydevd changed: step as debugpy does


def _stock_resolver():
    from _pydevd_bundle.pydevd_resolver import defaultResolver

    return defaultResolver


def _stock_target(obj):
    return obj.owner if isinstance(obj, stepthrough_variables.AllAttributes) else obj
