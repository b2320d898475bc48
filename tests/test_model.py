"""Properties of the encoder, attention and decoder on a tiny random model."""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.decoding import Decoding
from seq2seq.model import BahdanauAttention, Encoder, length_mask
from seq2seq.recurrence import Dropout, inverted_dropout
from seq2seq.vocab import BOS_ID, PAD_ID

pytestmark = pytest.mark.numerics  # run again under the other CPU kernels (.ci/run)


def random_batch(lengths: list[int], vocab: int = 20, extra_pad: int = 0) -> tuple:
    torch.manual_seed(1)
    src = torch.full((len(lengths), max(lengths) + extra_pad), PAD_ID)
    for row, length in enumerate(lengths):
        src[row, :length] = torch.randint(4, vocab, (length,))
    return src, torch.tensor(lengths)


def test_length_mask_is_true_at_real_tokens():
    mask = length_mask(torch.tensor([3, 1]), 4)
    assert mask.tolist() == [[True, True, True, False], [True, False, False, False]]


def test_attention_weights_sum_to_one_and_are_zero_on_padding():
    torch.manual_seed(0)
    attention = BahdanauAttention(query_size=5, key_size=6, hidden_size=4)
    values = torch.randn(3, 7, 6)
    mask = length_mask(torch.tensor([7, 4, 1]), 7)
    context, weights = attention(torch.randn(3, 5), attention.project_keys(values), values, mask)
    assert context.shape == (3, 6)
    assert torch.allclose(weights.sum(-1), torch.ones(3))
    assert (weights[~mask] == 0).all()
    assert (weights[mask] > 0).all()


def test_attention_is_the_textbook_softmax_of_v_tanh():
    """The sigmoid form only shifts each query's scores by sum(v): the weights are Bahdanau's."""
    torch.manual_seed(2)
    attention = BahdanauAttention(query_size=5, key_size=6, hidden_size=8)
    query, values = torch.randn(4, 5) * 3, torch.randn(4, 9, 6) * 3  # tanh well into saturation
    mask = length_mask(torch.tensor([9, 6, 2, 1]), 9)
    _, weights = attention(query, attention.project_keys(values), values, mask)
    hidden = torch.tanh(attention.query_proj(query).unsqueeze(1) + attention.key_proj(values))
    scores = attention.v(hidden).squeeze(-1).masked_fill(~mask, float("-inf"))  # (B, S)
    assert torch.allclose(weights, torch.softmax(scores, dim=-1), atol=1e-6)


def test_decoding_logits_are_the_output_layers(tiny_model):
    """Decoding runs the output layer padded to 16 rows (15 here), then cut back."""
    outputs = torch.rand(4, 3, 10) * 2 - 1  # (B, T, D)
    with torch.no_grad():
        logits = Decoding(tiny_model).logits(outputs)
        assert logits.shape == (4, 3, 15)
        torch.testing.assert_close(logits, tiny_model.decoder.output(outputs))
        ids = torch.tensor([0, 3, 14])
        torch.testing.assert_close(
            Decoding(tiny_model).output_rows(ids)(outputs),
            tiny_model.decoder.output(outputs)[..., ids],
        )


def test_decoding_steps_are_the_training_steps(tiny_model):
    """The looked-up embedding gates and the padded output change nothing but the speed."""
    src, lengths = random_batch([6, 4])
    decoding = Decoding(tiny_model)
    with torch.no_grad():
        encoded = tiny_model.encode(src, lengths)
        state = ours = tiny_model.decoder.init_state(encoded)
        for prev in ([BOS_ID, BOS_ID], [5, 9], [6, 10]):
            prev = torch.tensor(prev)
            output, state, weights = tiny_model.decoder.step(prev, state, encoded)
            mine, ours, my_weights = decoding.step(prev, ours, decoding.encode(src, lengths))
            torch.testing.assert_close(mine, output)
            torch.testing.assert_close(my_weights, weights)
            torch.testing.assert_close(decoding.logits(mine), tiny_model.decoder.logits(output))


def test_encoder_outputs_ignore_extra_padding(tiny_model):
    src, lengths = random_batch([5, 3, 2])
    padded = torch.cat([src, torch.full((3, 4), PAD_ID)], dim=1)
    with torch.no_grad():
        short = tiny_model.encode(src, lengths)
        long = tiny_model.encode(padded, lengths)
    for row, length in enumerate(lengths.tolist()):
        assert torch.allclose(short.outputs[row, :length], long.outputs[row, :length], atol=1e-6)
    assert torch.allclose(short.final[0], long.final[0], atol=1e-6)
    assert (long.outputs[0, 5:] == 0).all()  # padding positions stay empty


@pytest.mark.parametrize("layers", [1, 2])
def test_training_s_masked_encoder_is_nn_lstm_over_packed_steps(layers):
    """Outputs, final states and every parameter's gradient, against nn.LSTM (decoding's)."""
    torch.manual_seed(3)
    encoder = Encoder(20, 6, 5, layers, dropout=0.0)
    src, lengths = random_batch([5, 1, 3, 5, 2], extra_pad=2)
    results = []
    for masked in (True, False):
        encoder.zero_grad()
        if masked:
            outputs, (h, c) = encoder(src, lengths)  # grad enabled: the masked loop
        else:  # the packed path, which decoding takes, here with gradients
            embedded = encoder.embedding(src)
            packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
            packed_out, (hs, cs) = encoder.rnn(packed)
            outputs, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=src.size(1))
            h, c = torch.cat([hs[-2], hs[-1]], -1), torch.cat([cs[-2], cs[-1]], -1)
        weights = torch.linspace(-1, 1, outputs.numel()).view_as(outputs)
        ((outputs * weights).sum() + (h * 2).sum() + (c * 3).sum()).backward()
        grads = [param.grad.clone() for param in encoder.parameters()]
        results.append((outputs.detach(), h.detach(), c.detach(), grads))
    (out_a, h_a, c_a, grads_a), (out_b, h_b, c_b, grads_b) = results
    assert torch.equal(
        out_a[length_mask(lengths, src.size(1)).logical_not()],
        torch.zeros_like(out_a[length_mask(lengths, src.size(1)).logical_not()]),
    )
    torch.testing.assert_close(out_a, out_b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(h_a, h_b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c_a, c_b, rtol=1e-5, atol=1e-6)
    for grad_a, grad_b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(grad_a, grad_b, rtol=1e-4, atol=1e-6)


def test_decoder_steps_by_hand_equal_teacher_forced_forward(tiny_model):
    src, lengths = random_batch([6, 4])
    tgt_in = torch.tensor([[BOS_ID, 5, 6, 7, 8], [BOS_ID, 9, 10, PAD_ID, PAD_ID]])
    with torch.no_grad():
        forward_logits = tiny_model(src, lengths, tgt_in)  # (B, T, V)
        encoded = tiny_model.encode(src, lengths)
        state = tiny_model.decoder.init_state(encoded)
        by_hand = []
        for t in range(tgt_in.size(1)):
            output, state, _ = tiny_model.decoder.step(tgt_in[:, t], state, encoded)
            by_hand.append(tiny_model.decoder.logits(output))
    assert torch.allclose(forward_logits, torch.stack(by_hand, dim=1), atol=1e-6)


def test_decoder_state_select_reorders_hypotheses(tiny_model):
    src, lengths = random_batch([6, 4])
    with torch.no_grad():
        encoded = tiny_model.encode(src, lengths)
        state = tiny_model.decoder.init_state(encoded)
    flipped = state.select(torch.tensor([1, 0]))
    assert torch.equal(flipped.h[:, 0], state.h[:, 1])
    assert torch.equal(encoded.select(torch.tensor([1, 1])).keys[0], encoded.keys[1])


def test_tied_embeddings_share_one_tensor():
    from seq2seq.config import ModelConfig
    from seq2seq.model import Seq2Seq

    model = Seq2Seq.from_config(ModelConfig(embedding_size=8, tie_embeddings=True), 10, 12)
    assert model.decoder.output.weight is model.decoder.embedding.weight
    src, lengths = random_batch([3], vocab=10)
    assert model(src, lengths, torch.tensor([[BOS_ID, 4]])).shape == (1, 2, 12)


def reference_logits(model, src, lengths, tgt_in):
    """The textbook loop: nn.LSTMCell modules called step by step, as the paper writes it."""
    decoder = model.decoder
    encoded = model.encode(src, lengths)
    state = decoder.init_state(encoded)
    h, c, feed = list(state.h), list(state.c), state.feed
    outputs = []
    for t in range(tgt_in.size(1)):
        x = torch.cat([decoder.embedding(tgt_in[:, t]), feed], dim=-1)
        for layer, cell in enumerate(decoder.cells):
            h[layer], c[layer] = cell(x, (h[layer], c[layer]))
            x = h[layer]
        context, _ = decoder.attention(x, encoded.keys, encoded.outputs, encoded.mask)
        feed = torch.tanh(decoder.combine(torch.cat([x, context], dim=-1)))
        outputs.append(feed)
    return decoder.logits(torch.stack(outputs, dim=1))


def test_optimized_forward_equals_textbook_loop(tiny_model):
    src, lengths = random_batch([6, 4, 1])
    tgt_in = torch.tensor([[BOS_ID, 5, 6, 7], [BOS_ID, 9, 10, PAD_ID], [BOS_ID, 4, PAD_ID, PAD_ID]])
    with torch.no_grad():
        assert torch.allclose(
            tiny_model(src, lengths, tgt_in),
            reference_logits(tiny_model, src, lengths, tgt_in),
            atol=1e-5,
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_dropout_keeps_each_value_with_probability_1_minus_p_and_scales_it(dtype, p):
    torch.manual_seed(0)
    x = torch.rand(400, 512).add(0.5).to(dtype).requires_grad_()
    y = inverted_dropout(x, p)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.01  # 204,800 draws
    scale = torch.tensor(1 / (1 - p), dtype=dtype)
    assert torch.equal(y[kept], x[kept] * scale)
    y.sum().backward()
    assert torch.equal(x.grad, kept.to(dtype) * scale)  # the gradient goes through the mask


def test_dropout_is_the_identity_in_eval_and_at_0_and_zero_at_1():
    x = torch.randn(7, 5)
    assert inverted_dropout(x, 0.3, training=False) is x and inverted_dropout(x, 0.0) is x
    assert torch.equal(inverted_dropout(x, 1.0), torch.zeros_like(x))
    module = Dropout(0.3).eval()
    assert module(x) is x and not list(module.state_dict())
