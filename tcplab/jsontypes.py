"""
The type of a decoded JSON object, named once for every wire format.

Values are C{object}: whatever reads one checks its type first (the file
service's strict validators, the chat cluster's C{str()}/C{int()}), so
mypy sees every unchecked use.
"""

from __future__ import annotations

from typing import TypeAlias

JSONObject: TypeAlias = dict[str, object]
"""A decoded JSON object (or one about to be encoded)."""
