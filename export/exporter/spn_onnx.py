"""ONNX translation of ``torch.ops.ial.spn_scan`` for ``torch.onnx.export(dynamo=True)``.

The scan becomes one standard ONNX ``Scan`` over the scanned axis, vectorised
over everything else: each iteration updates a whole line (B, C, N) at once,
because onnxruntime pays a fixed cost per Scan iteration and per node in the
body. Everything that does not depend on the previous line -- the border
masks, the (1 - a - b - c) x term -- is computed once, outside the loop, so
the body is only two shifts (Pad), three products and three sums.

Both gate layouts translate alike: channel-shared gates (B, 3, H, W) give (T, B, 1, N)
lines that the body's element-wise ops broadcast over the C channels of x, so the
scan inputs of the shared layout are C times smaller.

Used as ``custom_translation_table={torch.ops.ial.spn_scan.default: spn_scan_onnx}``.

Formulations measured in onnxruntime 1.31 (CPU, 2 threads, 1 x 21 x 321 x 321, four
directions) and not kept: the gates stacked as one (T, B, C, N, 3) scan input with
a Gather of the three neighbours and a ReduceSum in the body (fewer body nodes,
but the 5-D transpose and the gather cost 2-3x more), a 1-D Conv making the three
shifted lines (no gain), and a/b/c split before their transposes (no faster).
Reversed directions use Scan's own direction attributes rather than flipped copies.
"""
import onnxscript
from onnxscript import opset18 as op
from onnxscript.function_libs.torch_lib.tensor_typing import TFloat

# (B, C, H, W) <-> (T, B, C, N): the scanned axis first, the line axis last.
_TO_LINES = {True: [3, 0, 1, 2], False: [2, 0, 1, 3]}
_FROM_LINES = {True: [1, 2, 3, 0], False: [1, 2, 0, 3]}


# The two Scan calls live in script functions because only the script
# converter knows the number of outputs of a variadic op such as Scan.
# Their return annotations give the exporter their output count.
@onnxscript.script()
def _scan_lines_forward(u: TFloat, a: TFloat, b: TFloat, c: TFloat) -> TFloat:
    # Body parameters stay unannotated: annotated ones become rank 0.
    @onnxscript.graph()
    def next_line(previous, u_t, a_t, b_t, c_t):
        # previous is (B, C, N); low[i] = previous[i-1], high[i] = previous[i+1],
        # 0 outside the line (the gates there are 0 too).
        low = op.Pad(previous, op.Constant(value_ints=[0, 0, 1, 0, 0, -1]))
        high = op.Pad(previous, op.Constant(value_ints=[0, 0, -1, 0, 0, 1]))
        line = op.Add(op.Add(u_t, op.Mul(b_t, previous)), op.Add(op.Mul(a_t, low), op.Mul(c_t, high)))
        return line, line

    start = op.Mul(op.Gather(u, op.Constant(value_int=0), axis=0), op.CastLike(op.Constant(value_float=0.0), u))
    last, lines = op.Scan(start, u, a, b, c, body=next_line, num_scan_inputs=4)
    return lines


@onnxscript.script()
def _scan_lines_reverse(u: TFloat, a: TFloat, b: TFloat, c: TFloat) -> TFloat:
    @onnxscript.graph()
    def next_line(previous, u_t, a_t, b_t, c_t):
        low = op.Pad(previous, op.Constant(value_ints=[0, 0, 1, 0, 0, -1]))
        high = op.Pad(previous, op.Constant(value_ints=[0, 0, -1, 0, 0, 1]))
        line = op.Add(op.Add(u_t, op.Mul(b_t, previous)), op.Add(op.Mul(a_t, low), op.Mul(c_t, high)))
        return line, line

    start = op.Mul(op.Gather(u, op.Constant(value_int=0), axis=0), op.CastLike(op.Constant(value_float=0.0), u))
    last, lines = op.Scan(
        start, u, a, b, c, body=next_line, num_scan_inputs=4,
        scan_input_directions=[1, 1, 1, 1], scan_output_directions=[1],
    )
    return lines


def _keep_mask(length, dropped_index):
    """float (length,) vector: 1 everywhere but at ``dropped_index``."""
    positions = op.Range(op.Constant(value_int=0), length, op.Constant(value_int=1))
    return op.Cast(op.Not(op.Equal(positions, dropped_index)), to=1)  # 1 = FLOAT


def spn_scan_onnx(x, gates, direction: int):
    """ONNX graph of ``spn_scan(x, gates, direction)`` (see ial_ext.ops.spn_scan)."""
    if direction not in (0, 1, 2, 3):
        raise ValueError(f"spn_scan: direction must be 0, 1, 2 or 3, got {direction}")
    horizontal = direction in (0, 1)
    reverse = direction in (1, 3)
    x_lines = op.Transpose(x, perm=_TO_LINES[horizontal])  # (T, B, C, N)
    a, b, c = op.Split(op.Transpose(gates, perm=_TO_LINES[horizontal]), axis=2, num_outputs=3)

    shape = op.Shape(x_lines)
    steps = op.Squeeze(op.Slice(shape, op.Constant(value_ints=[0]), op.Constant(value_ints=[1])))
    width = op.Squeeze(op.Slice(shape, op.Constant(value_ints=[3]), op.Constant(value_ints=[4])))
    one = op.Constant(value_int=1)
    # The first line of the scan has no previous line: all its gates are 0, so h = x there.
    first = op.Sub(steps, one) if reverse else op.Constant(value_int=0)
    keep_step = op.CastLike(op.Unsqueeze(_keep_mask(steps, first), op.Constant(value_ints=[1, 2, 3])), x)
    # a looks at index i-1 and c at i+1 of the previous line: dropped at the line's ends,
    # from both the neighbour sum and the (1 - a - b - c) weight.
    keep_low = op.Mul(keep_step, op.CastLike(_keep_mask(width, op.Constant(value_int=0)), x))
    keep_high = op.Mul(keep_step, op.CastLike(_keep_mask(width, op.Sub(width, one)), x))
    a = op.Mul(a, keep_low)
    b = op.Mul(b, keep_step)
    c = op.Mul(c, keep_high)
    u = op.Mul(op.Sub(op.Sub(op.Sub(op.CastLike(op.Constant(value_float=1.0), x), a), b), c), x_lines)

    scan = _scan_lines_reverse if reverse else _scan_lines_forward
    return op.Transpose(scan(u, a, b, c), perm=_FROM_LINES[horizontal])
