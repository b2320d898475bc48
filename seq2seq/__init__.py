"""seq2seq: attentional LSTM neural machine translation (the distribution seq2seq-nmt)."""

from importlib import metadata

try:
    __version__ = metadata.version("seq2seq-nmt")
except metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "unknown"
