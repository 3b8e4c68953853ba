"""memberkit core. What a plugin author needs is here: ``hookimpl`` and the types in ``core.types``."""

import pluggy

hookimpl = pluggy.HookimplMarker("memberkit")

__all__ = ["hookimpl"]
