"""Golden vectors: seeded and edge-case operator cases written as .npy, .safetensors, $readmemh hex
and C headers, with a manifest (docs/golden.md). ``ilsim golden ops OUT`` on the command line."""

from ilsim.golden.cases import DEFAULT_CASES, DEFAULT_SEED, generate_cases, golden_op_names
from ilsim.golden.ops import MANIFEST, verify_golden_dir, write_golden_ops
from ilsim.golden.writers import FORMATS, hex_lines, parse_hex, read_hex

__all__ = ["DEFAULT_CASES", "DEFAULT_SEED", "FORMATS", "MANIFEST", "generate_cases", "golden_op_names",
           "hex_lines", "parse_hex", "read_hex", "verify_golden_dir", "write_golden_ops"]
