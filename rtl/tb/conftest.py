# The test_*.py files here are cocotb benches (run inside the simulator by rtl/tb/run.py or
# tests/test_rtl.py), not pytest tests: keep a bare `pytest rtl` from collecting them.
collect_ignore_glob = ["test_*.py"]
