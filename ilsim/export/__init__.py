"""Offline export: float checkpoint -> calibrated, smoothed, quantized integer graph.

Floats are allowed here and only here (and in the float reference model); everything this
package writes into a graph is an integer tensor or an exact integer attribute.
"""
