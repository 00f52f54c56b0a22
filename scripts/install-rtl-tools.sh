#!/bin/sh
# Install Icarus Verilog for the RTL client tests (tests/test_rtl.py) when it is missing.
# As root on Debian/Ubuntu it uses apt-get; elsewhere it says what to install and carries on
# (the RTL tests then skip with that reason). cocotb itself comes with the `test` extra.
if command -v iverilog >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog >/dev/null \
    && exit 0
  echo "install-rtl-tools: apt-get could not install iverilog; the RTL tests will be skipped" >&2
  exit 0
fi
echo "install-rtl-tools: iverilog is not installed (Debian: apt-get install iverilog); the RTL tests will be skipped" >&2
exit 0
