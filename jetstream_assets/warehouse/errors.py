"""The warehouse's error, in a module of its own: code that only catches it (validate-config's dry runs)
imports neither Dagster nor pandas."""


class WarehouseError(RuntimeError):
    """A query or table operation failed; the message names the table and the engine's reason."""
