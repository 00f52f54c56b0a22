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

    // Each stage has its own wires (not one array indexed by stage): a lint tool then sees a chain
    // of distinct signals, not one signal feeding itself (Verilator's UNOPTFLAT).
    genvar i;
    generate
        for (i = 0; i < STAGES; i = i + 1) begin : stage
            wire [N_BITS-1:0] rem_in;
            wire [N_BITS-1:0] root_in;
            wire [N_BITS-1:0] rem_out;
            wire [N_BITS-1:0] root_out;
            if (i == 0) begin : first
                assign rem_in  = n;
                assign root_in = {N_BITS{1'b0}};
            end else begin : chained
                assign rem_in  = stage[i-1].rem_out;
                assign root_in = stage[i-1].root_out;
            end
            wire [N_BITS-1:0] bit_v = {{(N_BITS-1){1'b0}}, 1'b1} << (N_BITS - 2 - 2 * i);
            wire [N_BITS-1:0] trial = root_in + bit_v;
            wire              take  = rem_in >= trial;
            assign rem_out  = take ? rem_in - trial : rem_in;
            assign root_out = take ? (root_in >> 1) + bit_v : (root_in >> 1);
        end
    endgenerate

    // the root has N_BITS/2 bits (the upper half of root_out is 0) and the last remainder is unused
    /* verilator lint_off UNUSEDSIGNAL */
    wire [N_BITS-1:0] root_last = stage[STAGES-1].root_out;
    wire [N_BITS-1:0] rem_last  = stage[STAGES-1].rem_out;
    /* verilator lint_on UNUSEDSIGNAL */
    assign r = root_last[N_BITS/2-1:0];
endmodule
