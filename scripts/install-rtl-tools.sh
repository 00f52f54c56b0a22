#!/bin/sh
# Install Icarus Verilog and Verilator for the RTL client tests (tests/test_rtl.py) when missing:
# Icarus runs the cocotb benches, Verilator lints the RTL (and runs the benches too where it is
# new enough for cocotb 2, 5.036 or later). As root on Debian/Ubuntu it uses apt-get; elsewhere it
# says what to install and carries on (those RTL tests then skip with that reason). cocotb itself
# comes with the `test` extra.
missing=""
command -v iverilog >/dev/null 2>&1 || missing="$missing iverilog"
command -v verilator >/dev/null 2>&1 || missing="$missing verilator"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null \
    && exit 0
  echo "install-rtl-tools: apt-get could not install$missing; those RTL tests will be skipped" >&2
  exit 0
fi
echo "install-rtl-tools: not installed:$missing (Debian: apt-get install$missing); those RTL tests will be skipped" >&2
exit 0
