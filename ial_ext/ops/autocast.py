"""What the ops do under ``torch.autocast`` (CPU and CUDA).

Every floating input of the forward ops is cast to float32, and they return
float32: autocast would otherwise hand them mixed dtypes (bfloat16 gates from a
convolution next to float32 probabilities from a softmax, which the ops reject).
float32 rather than the autocast dtype because each of them is a long sum, as
autocast's own float32 list (softmax, sum, cumsum, norms) is: a scan is a
recurrence over up to H or W steps, a pool a mean over whole segments and a
similarity gate the exp of a sum over the embedding, the upsampled softmax a softmax, and their outputs feed the losses. The kernels accumulate in float32 anyway, so the
cast costs only the conversion of the inputs; called outside autocast with
float16 or bfloat16 tensors, the ops return that dtype.
"""
import torch

AUTOCAST_OPS = (
    "ial::spn_scan", "ial::spn_propagate", "ial::similarity_gates", "ial::superpixel_pool", "ial::superpixel_unpool",
    "ial::upsampled_softmax",
)

for _op in AUTOCAST_OPS:
    for _device in ("cpu", "cuda"):
        torch.library.register_autocast(_op, _device, torch.float32)
