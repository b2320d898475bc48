"""Decoding without PyTorch: ONNX Runtime over a folder that ``seq2seq export`` wrote.

Needs onnxruntime, numpy, sentencepiece and pyyaml (spaCy too for a model
tokenized with spaCy), never torch: a test runs it in a subprocess and checks
that ``torch`` was not imported. ``exported.py`` opens the folder,
``search.py`` is the greedy and beam search in NumPy (kept equal to
search.py's by a conformance test), ``translator.py`` the ``Translator``
interface over both.
"""

from seq2seq.runtime.exported import ExportedModel, ExportError
from seq2seq.runtime.translator import RuntimeTranslator

__all__ = ["ExportError", "ExportedModel", "RuntimeTranslator"]
