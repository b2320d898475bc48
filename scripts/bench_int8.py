"""Which int8 matrix product is fast on this CPU? One table, the decoder step's shapes.

    python scripts/bench_int8.py [--threads 1]

Times y = x W^T + b for fp32 and for each int8 route PyTorch offers on the CPU:
oneDNN's ``qlinear_pointwise`` as seq2seq uses it (quantize.py), the deprecated
``torch.ao`` dynamic quantization (fbgemm), ``torch._int_mm``,
``torch._weight_int8pack_mm``, and torchao's int8 configurations when torchao
is installed. Also prints each route's largest error against fp32 for inputs
in [-1, 1] (what the decoder's quantized products read).
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
import torch.nn.functional as F

from seq2seq.quantize import Int8Linear

SHAPES = [(500, 1024, 2048), (500, 512, 3963), (100, 1024, 2048), (10, 1024, 2048)]


def timed(function, repeats: int = 10) -> float:
    start = time.perf_counter()
    function()
    if time.perf_counter() - start > 0.2:  # a slow route: one more run is enough
        repeats = 1
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats * 1000


def routes(linear: torch.nn.Linear) -> dict:
    w, b = linear.weight.detach(), linear.bias.detach()
    scales = w.abs().amax(1) / 127
    wq = torch.round(w / scales[:, None]).to(torch.int8)
    found = {"fp32": linear, "onednn int8 (seq2seq)": Int8Linear.from_linear(linear)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found["torch.ao dynamic (deprecated)"] = torch.ao.quantization.quantize_dynamic(
            torch.nn.Sequential(linear), {torch.nn.Linear}, dtype=torch.qint8
        )

    def int_mm(x):
        x_scale = x.abs().amax(1, keepdim=True) / 127
        y = torch._int_mm(torch.round(x / x_scale).to(torch.int8), wq.t().contiguous())
        return y.float() * x_scale * scales + b

    found["torch._int_mm"] = int_mm
    found["torch._weight_int8pack_mm"] = lambda x: torch._weight_int8pack_mm(x, wq, scales) + b
    try:
        import torchao.quantization as tq

        for name in ("Int8DynamicActivationInt8WeightConfig", "Int8WeightOnlyConfig"):
            module = torch.nn.Sequential(torch.nn.Linear(linear.in_features, linear.out_features))
            module[0].load_state_dict(linear.state_dict())
            tq.quantize_(module, getattr(tq, name)())
            found[f"torchao {name}"] = module
    except ImportError:
        pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"{args.threads} thread(s), torch {torch.__version__}")
    print(
        f"| {'route':<45} | "
        + " | ".join(f"{m}x{k}x{n} ms" for m, k, n in SHAPES)
        + " | max error |"
    )
    print("|---|" + "---|" * (len(SHAPES) + 1))
    results: dict[str, list[str]] = {}
    errors: dict[str, float] = {}
    with torch.no_grad():
        for m, k, n in SHAPES:
            linear = torch.nn.Linear(k, n)
            x = torch.rand(m, k) * 2 - 1
            exact = F.linear(x, linear.weight, linear.bias)
            for name, route in routes(linear).items():
                try:
                    results.setdefault(name, []).append(f"{timed(lambda r=route, v=x: r(v)):.1f}")
                    error = float((route(x) - exact).abs().max())
                    errors[name] = max(errors.get(name, 0.0), error)
                except Exception as failure:  # a route this build does not support
                    results.setdefault(name, []).append(f"n/a ({type(failure).__name__})")
    for name, cells in results.items():
        print(f"| {name:<45} | " + " | ".join(cells) + f" | {errors.get(name, float('nan')):.3f} |")


if __name__ == "__main__":
    main()
