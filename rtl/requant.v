// requant: y = saturate_{OUT_BITS signed}(round_half_up(x * m / 2^k))
//
// Bit-exact with ilsim:
//   saturate_reference(rshift_round_reference(x * m, k, "half_up"), OUT_BITS, True)
// x: signed X_BITS, m: unsigned M_BITS, k: unsigned K_BITS (the caller keeps k <= X_BITS + M_BITS - 1;
// the default widths give k in [0, 47]). Half up: (p + (1 << (k-1))) >>> k for k >= 1, p for k = 0.
// Combinational; register the output outside if a pipeline stage is wanted.
//
// ROUNDING_BUG is for testing the test bench only; never set it. 1: adds (1 << (k-1)) - 1 (ties
// round down); 2: adds nothing (floor, i.e. truncation of the shifted-out bits). Both must FAIL.
module requant #(
    parameter integer X_BITS = 32,
    parameter integer M_BITS = 16,
    parameter integer K_BITS = 6,
    parameter integer OUT_BITS = 8,
    parameter integer ROUNDING_BUG = 0
) (
    input  wire signed [X_BITS-1:0]   x,
    input  wire        [M_BITS-1:0]   m,
    input  wire        [K_BITS-1:0]   k,
    output wire signed [OUT_BITS-1:0] y
);
    // |x * m| < 2^(X_BITS + M_BITS - 1); adding the half (< 2^(X_BITS + M_BITS - 2)) needs one more bit.
    localparam integer P_BITS = X_BITS + M_BITS + 1;

    wire signed [P_BITS-1:0] xs = {{(P_BITS - X_BITS){x[X_BITS-1]}}, x};
    wire signed [P_BITS-1:0] ms = {{(P_BITS - M_BITS){1'b0}}, m};
    wire signed [P_BITS-1:0] p  = xs * ms;

    wire        [P_BITS-1:0] one  = {{(P_BITS-1){1'b0}}, 1'b1};
    wire        [P_BITS-1:0] half_u = (k == {K_BITS{1'b0}}) ? {P_BITS{1'b0}}
                                    : (ROUNDING_BUG == 1) ? ((one << (k - 1'b1)) - one)
                                    : (ROUNDING_BUG == 2) ? {P_BITS{1'b0}}
                                    : (one << (k - 1'b1));
    wire signed [P_BITS-1:0] half = half_u;
    wire signed [P_BITS-1:0] sum  = p + half;
    wire signed [P_BITS-1:0] q    = sum >>> k;

    localparam signed [P_BITS-1:0] HI = (1 <<< (OUT_BITS - 1)) - 1;
    localparam signed [P_BITS-1:0] LO = -(1 <<< (OUT_BITS - 1));

    assign y = (q > HI) ? HI[OUT_BITS-1:0]
             : (q < LO) ? LO[OUT_BITS-1:0]
             : q[OUT_BITS-1:0];
endmodule
