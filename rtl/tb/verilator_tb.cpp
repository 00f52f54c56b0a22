// A plain C++ bench for Verilator (no cocotb): drives every golden vector of one unit through the
// verilated model and compares the output bit for bit, printing the first 10 mismatches.
//   UNIT_REQUANT: rtl/vectors/requant/{x,m,k,y}.hex through requant.v (y masked to OUT_BITS)
//   UNIT_ISQRT:   rtl/vectors/<dir>/{n,r}.hex through isqrt.v (r masked to R_BITS = N_BITS / 2)
// Built and run by rtl/tb/run.py (--sim verilator-cpp); exit status 0 when every case matches.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <verilated.h>
#ifdef UNIT_REQUANT
#include "Vrequant.h"
typedef Vrequant Top;
#else
#include "Visqrt.h"
typedef Visqrt Top;
#endif

static std::vector<uint64_t> read_hex(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        std::fprintf(stderr, "cannot read %s\n", path.c_str());
        std::exit(2);
    }
    std::vector<uint64_t> values;
    std::string line;
    while (std::getline(in, line)) {
        if (!line.empty()) values.push_back(std::stoull(line, nullptr, 16));
    }
    return values;
}

static uint64_t mask(int bits) { return bits >= 64 ? ~0ULL : ((1ULL << bits) - 1); }

int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s VECTOR_DIR\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];
    Top top;
    size_t cases = 0, bad = 0;
#ifdef UNIT_REQUANT
    const auto x = read_hex(dir + "/x.hex"), m = read_hex(dir + "/m.hex");
    const auto k = read_hex(dir + "/k.hex"), y = read_hex(dir + "/y.hex");
    cases = y.size();
    for (size_t i = 0; i < cases; ++i) {
        top.x = static_cast<uint32_t>(x[i]);
        top.m = static_cast<uint16_t>(m[i]);
        top.k = static_cast<uint8_t>(k[i]);
        top.eval();
        const uint64_t got = static_cast<uint64_t>(top.y) & mask(OUT_BITS);
        if (got != y[i] && bad++ < 10)
            std::printf("case %zu: x=%llx m=%llx k=%llu: rtl y=%llx golden y=%llx\n", i, (unsigned long long)x[i],
                        (unsigned long long)m[i], (unsigned long long)k[i], (unsigned long long)got,
                        (unsigned long long)y[i]);
    }
#else
    const auto n = read_hex(dir + "/n.hex"), r = read_hex(dir + "/r.hex");
    cases = r.size();
    for (size_t i = 0; i < cases; ++i) {
        top.n = n[i];
        top.eval();
        const uint64_t got = static_cast<uint64_t>(top.r) & mask(R_BITS);
        if (got != r[i] && bad++ < 10)
            std::printf("case %zu: n=%llx: rtl r=%llx golden r=%llx\n", i, (unsigned long long)n[i],
                        (unsigned long long)got, (unsigned long long)r[i]);
    }
#endif
    top.final();
    std::printf("%zu cases, %zu differ\n", cases, bad);
    return bad == 0 && cases > 0 ? 0 : 1;
}
