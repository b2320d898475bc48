"""int8 inference: close to fp32, and a sentence's translation independent of its batch."""

import torch

from seq2seq.config import DecodeOptions
from seq2seq.quantize import Int8Linear, quantize_int8
from seq2seq.search import beam_search, greedy

from .test_model import random_batch


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
    model = quantize_int8(tiny_model)
    decoder = model.decoder
    assert decoder.int8_projections is not None and len(decoder.int8_projections) == 2
    for layer in (decoder.combine, decoder.output, decoder.attention.query_proj):
        assert isinstance(layer, Int8Linear)


def test_an_int8_translation_does_not_depend_on_the_batch(tiny_model):
    model = quantize_int8(tiny_model)
    src, lengths = random_batch([6, 4, 3, 5])
    together = greedy(model, src, lengths)
    beams = beam_search(model, src, lengths, DecodeOptions(beam=3))
    for i, length in enumerate(lengths.tolist()):
        alone_src, alone_len = src[i : i + 1, :length], lengths[i : i + 1]
        assert greedy(model, alone_src, alone_len)[0].tokens == together[i].tokens
        alone = beam_search(model, alone_src, alone_len, DecodeOptions(beam=3))[0][0]
        assert alone.tokens == beams[i][0].tokens
