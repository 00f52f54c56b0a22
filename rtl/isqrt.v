// isqrt: r = floor(sqrt(n)) for unsigned N_BITS n (N_BITS even), fully unrolled, combinational.
//
// The restoring bit-pair method of ilsim/arith/isqrt.py (isqrt_reference), one stage per bit pair:
//   bit = 4^(N_BITS/2 - 1); repeat: if n >= root + bit { n -= root + bit; root = (root >> 1) + bit }
//                                  else root >>= 1;  bit >>= 2
// The reference starts at bit = 2^62 for its 62-bit range; starting at the highest power of four
// below 2^N_BITS gives the same floor root for every n < 2^N_BITS (the skipped stages see n < bit).
module isqrt #(
    parameter integer N_BITS = 32
) (
    input  wire [N_BITS-1:0]   n,
    output wire [N_BITS/2-1:0] r
);
    localparam integer STAGES = N_BITS / 2;

    wire [N_BITS-1:0] rem  [0:STAGES];
    wire [N_BITS-1:0] root [0:STAGES];
    assign rem[0]  = n;
    assign root[0] = {N_BITS{1'b0}};

    genvar i;
    generate
        for (i = 0; i < STAGES; i = i + 1) begin : stage
            wire [N_BITS-1:0] bit_v = {{(N_BITS-1){1'b0}}, 1'b1} << (N_BITS - 2 - 2 * i);
            wire [N_BITS-1:0] trial = root[i] + bit_v;
            wire              take  = rem[i] >= trial;
            assign rem[i+1]  = take ? rem[i] - trial : rem[i];
            assign root[i+1] = take ? (root[i] >> 1) + bit_v : (root[i] >> 1);
        end
    endgenerate

    assign r = root[STAGES][N_BITS/2-1:0];
endmodule
