"""Which backend decodes a ``LoadSpec``: PyTorch for checkpoints, ONNX Runtime for an export.

The one place that chooses, so the command line, the workers, the server and
evaluation take either without knowing which. torch is imported only for a
checkpoint: translating an export folder never loads it.
"""

from __future__ import annotations

from seq2seq.translation import LoadSpec


def load_translator(spec: LoadSpec, threads: int | None = None):
    """A ``Translator`` (checkpoints) or a ``RuntimeTranslator`` (an export folder), using
    ``threads`` threads for its products (None: the library's default)."""
    spec = spec.resolve()
    if spec.exported:
        from seq2seq.runtime import RuntimeTranslator

        return RuntimeTranslator.load(spec, threads)
    set_threads(spec, threads)
    from seq2seq.translate import Translator

    return Translator.load(spec)


def set_threads(spec: LoadSpec, threads: int | None) -> None:
    """This process's thread count for PyTorch (an export's sessions take theirs at load)."""
    if threads is not None and not spec.exported:
        import torch

        torch.set_num_threads(threads)
