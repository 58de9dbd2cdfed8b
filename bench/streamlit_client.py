"""A Streamlit session without a browser: the websocket protocol a browser tab speaks, for load generation.

A browser tab costs a core-second or more of rendering per page; thirty of them on the server's own two cores
measure the browsers, not the server. This client opens the same websocket (``/_stcore/stream``), asks for a
page, sends widget values (a typed text, a button click) as the frontend does, and waits for the server's
"script finished": the server does exactly the work a real tab causes (the script run, the model calls, the
charts serialised and sent), and nothing is rendered. ``bench/classroom_load.py`` uses it for most of its
students and measures what students see with a few real browsers beside them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.asyncio.client import ClientConnection, connect


@dataclass
class ScriptRun:
    """What one script run sent: the elements (by kind) and how long it took from request to "finished"."""

    seconds: float
    elements: list = field(default_factory=list)
    fragments: list = field(default_factory=list)  # the fragment each element was drawn by ("" for none)

    def of_kind(self, kind: str) -> list:
        return [getattr(e, kind) for e in self.elements if e.WhichOneof("type") == kind]

    def fragment_of(self, widget_id: str) -> str:
        """The fragment that drew a widget: a browser reruns only that fragment when the widget changes."""
        for element, fragment in zip(self.elements, self.fragments):
            kind = element.WhichOneof("type")
            if kind and getattr(getattr(element, kind), "id", None) == widget_id:
                return fragment
        return ""

    def exception(self) -> str | None:
        found = self.of_kind("exception")
        return found[0].message if found else None


class StreamlitSession:
    """One session on a running Streamlit server, driven over its websocket."""

    def __init__(self, url: str, page: str) -> None:
        self.url = url.replace("http://", "ws://").rstrip("/") + "/_stcore/stream"
        self.page = page
        self.connection: ClientConnection | None = None

    async def open(self) -> ScriptRun:
        self.connection = await connect(self.url, subprotocols=["streamlit"], max_size=None, open_timeout=60)
        return await self.rerun([])

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()

    async def rerun(self, widgets: list[WidgetState], fragment_id: str = "") -> ScriptRun:
        """Ask for a run of the page (or of one fragment, as a browser does when a widget inside it changes)
        with these widget values; wait for it to finish."""
        message = BackMsg()
        message.rerun_script.page_name = self.page
        message.rerun_script.widget_states.widgets.extend(widgets)
        message.rerun_script.fragment_id = fragment_id
        start = time.perf_counter()
        await self.connection.send(message.SerializeToString())
        elements, fragments = [], []
        while True:
            forward = ForwardMsg()
            forward.ParseFromString(await self.connection.recv())
            kind = forward.WhichOneof("type")
            if kind == "delta" and forward.delta.WhichOneof("type") == "new_element":
                elements.append(forward.delta.new_element)
                fragments.append(forward.delta.fragment_id)
            elif kind == "script_finished":
                return ScriptRun(time.perf_counter() - start, elements, fragments)


def text_value(widget_id: str, value: str) -> WidgetState:
    state = WidgetState(id=widget_id)
    state.string_value = value
    return state


def click(widget_id: str) -> WidgetState:
    state = WidgetState(id=widget_id)
    state.trigger_value = True
    return state
