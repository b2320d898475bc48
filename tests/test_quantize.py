"""int8 inference: close to fp32, and a sentence's translation independent of its batch."""

import pytest
import torch

from seq2seq.config import DecodeOptions
from seq2seq.decoding import Decoding
from seq2seq.quantize import Int8Layer, Int8Linear
from seq2seq.search import beam_search, greedy

from .test_model import random_batch

pytestmark = pytest.mark.numerics  # run again under the other CPU kernels (.ci/run)


def test_int8_linear_is_close_to_fp32_on_bounded_inputs():
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 64)
    x = torch.rand(50, 256) * 2 - 1  # the quantized layers read values in (-1, 1)
    exact = linear(x)
    error = (Int8Linear.from_linear(linear)(x) - exact).abs().max()
    assert error < 0.02 * exact.abs().max()


def test_int8_linear_keeps_leading_dimensions_and_restricts_rows():
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 10)
    layer = Int8Linear.from_linear(linear)
    x = torch.rand(2, 3, 16) * 2 - 1
    assert layer(x).shape == (2, 3, 10)
    ids = torch.tensor([0, 4, 7])
    torch.testing.assert_close(layer.rows(ids)(x), layer(x)[..., ids])


def test_padding_the_outputs_to_a_multiple_of_16_changes_no_output():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 37)  # packed with 11 zero rows
    x = torch.rand(5, 64) * 2 - 1
    first = torch.nn.Linear(64, 32)  # needs no padding
    first.weight.data, first.bias.data = linear.weight[:32].clone(), linear.bias[:32].clone()
    padded, unpadded = Int8Linear.from_linear(linear)(x), Int8Linear.from_linear(first)(x)
    assert padded.shape == (5, 37) and torch.equal(padded[:, :32], unpadded)


def test_the_whole_decoder_step_is_quantized(tiny_model):
    decoding = Decoding(tiny_model, quantize="int8")
    projections = decoding.layers.projections
    assert len(projections) == 2 and all(isinstance(p, Int8Layer) for p in projections)
    layers = (decoding.layers.query, decoding.layers.combine, decoding.key_proj, decoding.output)
    assert all(isinstance(layer, Int8Linear) for layer in layers)
    assert isinstance(tiny_model.decoder.combine, torch.nn.Linear)  # the model is not changed


def test_int8_decoding_is_close_to_fp32(tiny_model):
    src, lengths = random_batch([6, 4, 3, 5])
    fp32, int8 = Decoding(tiny_model), Decoding(tiny_model, quantize="int8")
    with torch.no_grad():
        encoded = [d.encode(src, lengths) for d in (fp32, int8)]
        states = [d.init_state(e) for d, e in zip((fp32, int8), encoded, strict=True)]
        prev = torch.full((4,), 2)  # BOS
        for _ in range(3):
            steps = [
                d.step(prev, s, e) for d, s, e in zip((fp32, int8), states, encoded, strict=True)
            ]
            (a, sa, _), (b, sb, _) = steps
            logits = fp32.logits(a)
            assert (int8.logits(b) - logits).abs().max() < 0.05 * logits.abs().max()
            states, prev = [sa, sb], logits.argmax(-1)


def test_an_int8_translation_does_not_depend_on_the_batch(tiny_model):
    model = Decoding(tiny_model, quantize="int8")
    src, lengths = random_batch([6, 4, 3, 5])
    together = greedy(model, src, lengths)
    beams = beam_search(model, src, lengths, DecodeOptions(beam=3))
    for i, length in enumerate(lengths.tolist()):
        alone_src, alone_len = src[i : i + 1, :length], lengths[i : i + 1]
        assert greedy(model, alone_src, alone_len)[0].tokens == together[i].tokens
        alone = beam_search(model, alone_src, alone_len, DecodeOptions(beam=3))[0][0]
        assert alone.tokens == beams[i][0].tokens
