"""The ilsim graph: file format (format.py), validation (validate.py) and graph ops (ops.py,
attention.py)."""

from ilsim.graph.format import ConstDecl, Graph, GraphError, ModelInfo, Node, declare, load_graph, save_graph

__all__ = ["ConstDecl", "Graph", "GraphError", "ModelInfo", "Node", "declare", "load_graph", "save_graph"]
