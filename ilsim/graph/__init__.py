"""The ilsim graph: file format (format.py, pure I/O), validation (validate.py) above it, files
that are read and written validated (files.py), the operator interface (op_base.py) and the node
types (ops.py, attention.py)."""

from ilsim.graph.files import load_graph, save_graph
from ilsim.graph.format import ConstDecl, Graph, GraphError, ModelInfo, Node, declare

__all__ = ["ConstDecl", "Graph", "GraphError", "ModelInfo", "Node", "declare", "load_graph", "save_graph"]
