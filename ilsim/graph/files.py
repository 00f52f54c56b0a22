"""Graph files as the rest of ilsim uses them: read and write (format.py, pure I/O) with the
complete validation (validate.py) on either side, so no code path loads or saves a graph that the
interpreter would refuse.
"""

from __future__ import annotations

from pathlib import Path

from ilsim.graph.format import Graph, read_graph, write_graph
from ilsim.graph.validate import validate_graph


def load_graph(path) -> Graph:
    """Read and fully validate a graph file. Any defect is a GraphError naming the file and the
    node or tensor; a truncated or corrupt file never reaches the interpreter."""
    graph = read_graph(path)
    validate_graph(graph)
    return graph


def save_graph(graph: Graph, path) -> Path:
    """Validate ``graph``, then write it to ``path`` atomically (:func:`write_graph`)."""
    validate_graph(graph)
    return write_graph(graph, path)
