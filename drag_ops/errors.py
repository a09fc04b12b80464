"""The one error type users see for bad input."""


class DragInputError(ValueError):
    """Bad user input: says where (node and input, when known) and what was expected.

    Nodes re-raise it with their own name via :meth:`at`, so the engine can stay ComfyUI-free
    while the message still names the node the user has to fix.
    """

    def __init__(self, message: str, *, node: str | None = None, input: str | None = None):
        self.node, self.input, self.detail = node, input, message
        super().__init__(self._format())

    def _format(self) -> str:
        where = " / ".join(p for p in (self.node, f"input '{self.input}'" if self.input else None) if p)
        return f"{where}: {self.detail}" if where else self.detail

    def at(self, node: str | None = None, input: str | None = None) -> "DragInputError":
        """A copy of this error located at a node and/or input (existing location wins)."""
        return DragInputError(self.detail, node=self.node or node, input=self.input or input)
